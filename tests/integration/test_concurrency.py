"""Concurrent writers: no lost update, no duplicate position, no 'database is locked'."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import timedelta
from typing import TypeVar

import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, create_async_engine
from sqlalchemy.pool import NullPool
from tests.support import Tenant, numbers

from outdial.campaign import repository as campaign_repository
from outdial.campaign.state import COUNT_KEYS
from outdial.database import write_transaction
from outdial.dialer import claim as claiming
from outdial.dialer import reaper, store
from outdial.dialer.wakeup import Wakeup
from outdial.dialer.worker import Dialer, dialer_settings
from outdial.models import Call, CampaignCount, CampaignRecipient, RecipientList, utcnow

T = TypeVar("T")


async def test_concurrent_appends_keep_positions_dense_and_counts_exact(tenant: Tenant) -> None:
    campaign = await tenant.campaign()
    batches = [numbers(25, start=100 * i) for i in range(12)]

    async def append(batch: list[str]) -> int:
        response = await tenant.post(
            f"/campaign/{campaign['id']}/recipients",
            json={"recipients": [{"phone_number": n} for n in batch]},
        )
        return response.status_code

    assert await asyncio.gather(*(append(b) for b in batches)) == [200] * len(batches)
    current = await tenant.ok("GET", f"/campaign/{campaign['id']}")
    assert current["counts"]["total"] == 300
    assert current["counts"]["pending"] == 300
    positions = []
    for offset in range(0, 300, 100):
        page = await tenant.ok(
            "GET", f"/campaign/{campaign['id']}/recipients", params={"limit": 100, "offset": offset}
        )
        positions += [r["position"] for r in page]
    assert positions == list(range(1, 301))


async def test_concurrent_edits_of_one_campaign_all_succeed(tenant: Tenant) -> None:
    campaign = await tenant.campaign()

    async def rename(i: int) -> int:
        response = await tenant.request(
            "PATCH",
            f"/campaign/{campaign['id']}",
            json={"name": f"name {i}", "max_concurrency": i + 1},
        )
        return response.status_code

    assert await asyncio.gather(*(rename(i) for i in range(15))) == [200] * 15
    final = await tenant.ok("GET", f"/campaign/{campaign['id']}")
    assert final["max_concurrency"] == int(final["name"].split()[1]) + 1


async def test_counters_written_from_many_connections_sum_exactly(
    app: FastAPI, tenant: Tenant, backend: str
) -> None:
    """Each connection writes its own shard of a counter (PostgreSQL); every read sums them,
    and a key whose shards cancel out counts as zero (the campaign can complete)."""
    campaign = await tenant.campaign()
    sessionmaker = app.state.sessionmaker
    writers = 4

    async def move(connection: AsyncConnection, i: int, gate: asyncio.Barrier | None) -> None:
        async with AsyncSession(bind=connection) as session:
            await campaign_repository.add_counts(
                session, campaign["id"], {"dialing": 1 if i % 2 else -1, "completed": 1}
            )
            if gate is not None:  # every writer holds its rows until all have written
                await asyncio.wait_for(gate.wait(), 10)
            await session.commit()

    engine = create_async_engine(sessionmaker.kw["bind"].url, poolclass=NullPool)
    try:
        if backend == "postgresql":
            # Connections of distinct shards, all in a transaction at once: on one row (or a
            # shared shard) the second writer would wait for the first, and the gate never
            # opens.
            connections: dict[int, AsyncConnection] = {}
            while len(connections) < writers:
                connection = await engine.connect()
                shard = (
                    await connection.execute(
                        text(f"SELECT pg_backend_pid() % {campaign_repository.COUNT_SHARDS}")
                    )
                ).scalar_one()
                await connection.rollback()
                if shard in connections:
                    await connection.close()
                else:
                    connections[shard] = connection
            gate = asyncio.Barrier(writers)
            try:
                await asyncio.gather(
                    *(move(c, i, gate) for i, c in enumerate(connections.values()))
                )
            finally:
                for connection in connections.values():
                    await connection.close()
        else:  # one writer at a time
            for i in range(writers):
                async with engine.connect() as connection:
                    await move(connection, i, None)
    finally:
        await engine.dispose()
    async with sessionmaker() as session:
        counts = (await campaign_repository.read_counts(session, [campaign["id"]]))[campaign["id"]]
        rows = (
            await session.execute(
                select(func.count()).where(CampaignCount.campaign_id == campaign["id"])
            )
        ).scalar_one()
    assert counts["completed"] == writers
    assert counts["dialing"] == 0
    assert await store.nothing_left(sessionmaker, campaign["id"])
    if backend == "postgresql":
        assert rows > len(COUNT_KEYS)  # the writers used several shards


async def test_claims_exclude_each_other_and_stop_but_not_the_ends_of_calls(
    app: FastAPI, tenant: Tenant, backend: str
) -> None:
    """A claim holds its campaign against other claims (a transaction-scoped advisory lock,
    tried without waiting) and against stop and pause (the row `FOR SHARE`), but neither a
    claim nor the end of a call waits for the other: a freed slot's refill is not held up
    by the end of another call, nor that end by a claim."""
    if backend != "postgresql":
        pytest.skip("row and advisory locks are PostgreSQL's (SQLite writes one at a time)")
    campaign = await tenant.campaign(recipients=[{"phone_number": n} for n in numbers(2)])
    await tenant.ok("POST", f"/campaign/{campaign['id']}/start")  # no dialer in this app
    sessionmaker = app.state.sessionmaker
    async with sessionmaker() as session:
        first, second = (
            await session.scalars(
                select(CampaignRecipient.id)
                .where(CampaignRecipient.campaign_id == campaign["id"])
                .order_by(CampaignRecipient.position)
            )
        ).all()

    async def within(seconds: float, step: Awaitable[T]) -> T:
        return await asyncio.wait_for(step, seconds)

    async with write_transaction(sessionmaker) as ending:  # a call's end, being written
        assert await within(5, store.lock_attempt(ending, campaign["id"], first)) is not None
        async with write_transaction(sessionmaker) as claim:
            claimable = await within(5, claiming.lock_running_campaign(claim, campaign["id"]))
            assert isinstance(claimable, claiming.Claimable)  # the end does not hold it up
            async with write_transaction(sessionmaker) as other:
                taken = await claiming.lock_running_campaign(other, campaign["id"])
                assert taken == claiming.ELSEWHERE  # running, and claimed by another
            async with write_transaction(sessionmaker) as another_end:
                locked = await within(5, store.lock_attempt(another_end, campaign["id"], second))
                assert locked is not None and locked.campaign_status == "running"
            stopping = asyncio.ensure_future(tenant.ok("POST", f"/campaign/{campaign['id']}/stop"))
            await asyncio.sleep(0.5)
            assert not stopping.done()  # the stop waits for the claim and the end
    stopped = await within(10, stopping)
    assert stopped["status"] == "completed"


async def test_a_start_waits_for_an_upload_to_its_list_and_snapshots_what_it_wrote(
    app: FastAPI, tenant: Tenant, backend: str
) -> None:
    """The start's snapshot (two counts and a copy, three statements) reads the list once
    an upload writing to it has committed: its counts and its rows are the same list."""
    if backend != "postgresql":
        pytest.skip("row locks are PostgreSQL's (SQLite writes one at a time)")
    listing = await tenant.recipient_list("phone_number\n" + "\n".join(numbers(3)) + "\n")
    campaign = await tenant.campaign(recipient_list_id=listing["id"])
    async with write_transaction(app.state.sessionmaker) as upload:  # an upload, writing
        await upload.execute(
            select(RecipientList).where(RecipientList.id == listing["id"]).with_for_update()
        )
        await upload.execute(
            text(
                "UPDATE recipient_list_rows SET phone_number = '+14155550100' "
                "WHERE list_id = :id AND position = "
                "(SELECT min(position) FROM recipient_list_rows WHERE list_id = :id)"
            ),
            {"id": listing["id"]},
        )
        starting = asyncio.ensure_future(tenant.ok("POST", f"/campaign/{campaign['id']}/start"))
        await asyncio.sleep(0.5)
        assert not starting.done()  # the start waits for the upload
    started = await asyncio.wait_for(starting, 10)
    assert started["status"] == "running" and started["counts"]["pending"] == 3
    rows = await tenant.ok("GET", f"/campaign/{campaign['id']}/recipients")
    assert "+14155550100" in {row["phone_number"] for row in rows}  # what the upload wrote


async def test_the_reaper_leaves_a_dial_its_sender_heard_of_as_it_came_for_it(
    app: FastAPI, tenant: Tenant, backend: str
) -> None:
    """A dial gone long past its lease with no word from the provider is ended `lost`, but
    only if that still holds once the reaper has its row: the sender that records the
    provider's id just then keeps its call (and its slot) live."""
    if backend != "postgresql":
        pytest.skip("row locks are PostgreSQL's (SQLite writes one at a time)")
    campaign = await tenant.campaign(recipients=[{"phone_number": numbers(1)[0]}])
    await tenant.ok("POST", f"/campaign/{campaign['id']}/start")  # no dialer in this app
    sessionmaker = app.state.sessionmaker
    now = utcnow()
    async with write_transaction(sessionmaker) as session:
        locked = await claiming.lock_running_campaign(session, campaign["id"])
        assert isinstance(locked, claiming.Claimable)
        secrets = app.state.carriers.call_secrets
        taken = await claiming.claim(session, locked, "test", now, timedelta(seconds=30), secrets)
    (job,) = taken.jobs
    # Past lease + three times the patience: ended `lost` even though the provider (none
    # answers this app) cannot be asked whether it has the call.
    long_ago = now - timedelta(seconds=200)
    async with write_transaction(sessionmaker) as session:
        await session.execute(
            update(Call)
            .where(Call.id == job.call_id)
            .values(dial_started_at=long_ago, lease_expires_at=long_ago)
        )
    async with write_transaction(sessionmaker) as sending:  # the provider's answer, recorded
        await sending.execute(select(Call.id).where(Call.id == job.call_id).with_for_update())
        reaping = asyncio.ensure_future(reaper.reap(sessionmaker, app.state.carriers, utcnow()))
        await asyncio.sleep(0.5)
        assert not reaping.done()  # it found the call, and waits for its row
        await sending.execute(
            update(Call)
            .where(Call.id == job.call_id)
            .values(provider_call_sid="CA0123", status="initiated", lease_expires_at=None)
        )
    await asyncio.wait_for(reaping, 10)
    call = await tenant.ok("GET", f"/calls/{job.call_id}")
    assert call["status"] == "initiated" and call["ended_reason"] is None
    counted = await tenant.ok("GET", f"/campaign/{campaign['id']}")
    assert counted["counts"]["calls_active"] == 1


async def test_a_worker_leaves_a_campaign_another_is_claiming_to_it(
    app: FastAPI, tenant: Tenant, backend: str
) -> None:
    """Every worker hears every NOTIFY. One that finds another claiming a campaign leaves
    that campaign's NOTIFYs to it for `sweep_seconds` instead of spending a transaction on
    a claim lock it cannot take; wake-ups from its own process, other campaigns and
    campaigns that were not running (a resume must not be missed) are claimed as before.
    (Sweeps claim every running campaign: not tried here, where other tests' campaigns
    run in the same database.)"""
    if backend != "postgresql":
        pytest.skip("the claim lock is PostgreSQL's (SQLite writes one at a time)")
    campaign = await tenant.campaign(recipients=[{"phone_number": n} for n in numbers(2)])
    await tenant.ok("POST", f"/campaign/{campaign['id']}/start")  # no dialer in this app
    draft = await tenant.campaign(
        recipients=[{"phone_number": n} for n in numbers(1, 50)],
        phone_number_id=campaign["phone_number_id"],
        assistant_id=campaign["assistant_id"],
    )
    tried: list[str] = []

    class Watched(Dialer):
        async def _claim_campaign(self, campaign_id: str) -> None:
            tried.append(campaign_id)
            await super()._claim_campaign(campaign_id)

    # (A sweep long enough that the rounds below, on a busy machine, fall within it.)
    settings = replace(dialer_settings(app.state.settings), sweep_seconds=2.0)
    worker = Watched(app.state.sessionmaker, app.state.carriers, settings, Wakeup())
    worker.wakeup.take()  # a new worker starts with a sweep; not wanted here

    async def round_after(wake: Callable[[str], None], campaign_id: str) -> None:
        wake(campaign_id)
        await worker.claim_round()

    running, other = campaign["id"], draft["id"]
    async with write_transaction(app.state.sessionmaker) as claim:  # another worker's claim
        assert isinstance(await claiming.lock_running_campaign(claim, running), claiming.Claimable)
        await round_after(worker.wakeup.notified, running)
        assert tried == [running]  # found claimed elsewhere
        await round_after(worker.wakeup.notified, running)
        assert tried == [running]  # left to the worker claiming it
        await round_after(worker.wakeup.notified, other)
        await round_after(worker.wakeup.notified, other)
        assert tried == [running, other, other]  # not running: nobody else is claiming it
        await round_after(worker.wakeup.campaign, running)
        assert tried == [running, other, other, running]  # woken here: its own business
        await asyncio.sleep(2.1)
        del tried[:]
        await round_after(worker.wakeup.notified, running)
        assert tried == [running]  # sweep_seconds on, the campaign's NOTIFYs count again
    # Found claimed elsewhere once more (just above); now the campaign stops, the worker
    # learns it from a wake-up of its own, and the campaign's NOTIFYs count again at once.
    await tenant.ok("POST", f"/campaign/{running}/stop")
    await round_after(worker.wakeup.campaign, running)
    await round_after(worker.wakeup.notified, running)
    assert tried == [running, running, running]
