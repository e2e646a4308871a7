"""Claim rounds as the dialer runs them, taken by hand on an app with no dialer: how far
ahead pacing reserves, how long a claim's lease lasts, and what a round that dials nobody
asks for."""

from __future__ import annotations

from datetime import datetime, timedelta

from fastapi import FastAPI
from sqlalchemy import select
from tests.claiming import window_around
from tests.support import Tenant, numbers

from outdial.database import write_transaction
from outdial.dialer import claim as claiming
from outdial.dialer.wakeup import Wakeup
from outdial.dialer.worker import Dialer, dialer_settings
from outdial.models import Call, utcnow

LEASE = timedelta(seconds=30)


async def claim_at(app: FastAPI, campaign_id: str, now: datetime) -> claiming.Round:
    async with write_transaction(app.state.sessionmaker) as session:
        locked = await claiming.lock_running_campaign(session, campaign_id)
        assert isinstance(locked, claiming.Claimable)
        secrets = app.state.carriers.call_secrets
        return await claiming.claim(session, locked, "test", now, LEASE, secrets)


async def test_pacing_reserves_no_further_ahead_than_its_horizon(
    app: FastAPI, tenant: Tenant
) -> None:
    """A number paced at one dial every four seconds, claimed every second (the sweep) with
    slots free: each round reserves only what the horizon has room for after the number's
    reservations already made, so dials are paced a few seconds after their claim, not a
    minute more per minute of claiming (past the lease, the reaper took them back unsent)."""
    number = await tenant.phone_number(calls_per_second=0.25)
    campaign = await tenant.campaign(
        recipients=[{"phone_number": n} for n in numbers(50)],
        max_concurrency=50,
        phone_number_id=number["id"],
    )
    await tenant.ok("POST", f"/campaign/{campaign['id']}/start")  # no dialer in this app
    start = utcnow()
    jobs: list[tuple[datetime, claiming.DialJob]] = []
    for second in range(40):
        now = start + timedelta(seconds=second)
        jobs += [(now, job) for job in (await claim_at(app, campaign["id"], now)).jobs]
    step = timedelta(seconds=4)
    assert len(jobs) <= 40 // 4 + 1  # one dial every four seconds, the first at once
    assert max(job.dial_at - claimed for claimed, job in jobs) <= claiming.PACING_HORIZON + step
    async with app.state.sessionmaker() as session:
        query = select(Call.id, Call.lease_expires_at).where(Call.campaign_id == campaign["id"])
        leases = dict((await session.execute(query)).all())
    for _, job in jobs:  # a claim's lease runs from its paced moment
        assert leases[job.call_id] == job.dial_at + LEASE


async def test_a_round_that_puts_everyone_off_asks_to_be_claimed_again(
    app: FastAPI, tenant: Tenant
) -> None:
    """Recipients outside their local hours ahead of one inside, one slot: a round looks
    at five recipients at most and puts them off. Such a round dials nobody, yet asks to be
    claimed again at once rather than at the next sweep (five recipients a second: a list
    that began with 36,000 of them kept the slot idle for two hours); the round that finds
    nobody left to put off does not."""
    window = {
        **window_around("America/New_York", timedelta(hours=1), timedelta(hours=1)),
        "timezone": "recipient",
    }
    west = [{"phone_number": f"+1415555{i:04d}"} for i in range(12)]  # three hours behind
    east = "+12125550100"
    campaign = await tenant.campaign(
        recipients=[*west, {"phone_number": east}], max_concurrency=1, calling_hours=window
    )
    await tenant.ok("POST", f"/campaign/{campaign['id']}/start")  # no dialer in this app
    worker = Dialer(
        app.state.sessionmaker, app.state.carriers, dialer_settings(app.state.settings), Wakeup()
    )
    worker.wakeup.take()  # (a new worker starts with a sweep)
    await worker._claim_campaign(campaign["id"])
    assert worker.wakeup.take() == (False, {campaign["id"]}, set())  # woken again at once
    rounds = []
    for _ in range(3):
        taken = await claim_at(app, campaign["id"], utcnow())
        rounds.append(([job.to_number for job in taken.jobs], taken.again))
    assert rounds == [([], True), ([east], False), ([], False)]
