"""Claiming: the one short transaction that turns due recipients into calls.

Lock the campaign row (`FOR UPDATE SKIP LOCKED`: a campaign another worker is claiming is
skipped, not waited for), compute free slots from the transactional counters, lock the
caller number for pacing, take due recipients (retries first, then by position) with
`FOR UPDATE SKIP LOCKED`, create their call rows, commit. The provider is called later,
outside any transaction. SQLite (one process) runs the same statements without the locks.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from outdial.campaign import repository as campaign_repository
from outdial.ids import new_id
from outdial.models import Call, Campaign, CampaignRecipient, PhoneNumber
from outdial.models.call import LIVE_STATUSES

PACING_HORIZON = timedelta(seconds=2)
BUSY_NUMBER_DEFERRAL = timedelta(seconds=30)


@dataclass(frozen=True)
class DialJob:
    """A claimed attempt, ready to be sent at `dial_at`."""

    call_id: str
    campaign_id: str | None
    phone_number_id: str
    to_number: str
    secret: str
    dial_at: datetime
    reset_breaker: bool = False  # the campaign had refused dials: a success resets the count


def new_secret() -> tuple[str, str]:
    secret = secrets.token_urlsafe(24)
    return secret, hashlib.sha256(secret.encode()).hexdigest()


async def lock_running_campaign(session: AsyncSession, campaign_id: str) -> Campaign | None:
    """The campaign if it is running and no other worker holds it right now."""
    query = (
        select(Campaign)
        .where(Campaign.id == campaign_id, Campaign.status == "running")
        .with_for_update(skip_locked=True)
    )
    return (await session.scalars(query)).one_or_none()


async def due_recipients(
    session: AsyncSession, campaign_id: str, now: datetime, limit: int
) -> list[CampaignRecipient]:
    """Up to `limit` recipients to dial now: retries that are due first, then by position."""
    retries = (
        select(CampaignRecipient)
        .where(
            CampaignRecipient.campaign_id == campaign_id,
            CampaignRecipient.status == "retry_scheduled",
            CampaignRecipient.next_attempt_at <= now,
        )
        .order_by(CampaignRecipient.next_attempt_at, CampaignRecipient.position)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    chosen = list((await session.scalars(retries)).all())
    if len(chosen) < limit:
        fresh = (
            select(CampaignRecipient)
            .where(
                CampaignRecipient.campaign_id == campaign_id,
                CampaignRecipient.status == "pending",
                or_(
                    CampaignRecipient.next_attempt_at.is_(None),
                    CampaignRecipient.next_attempt_at <= now,
                ),
            )
            .order_by(CampaignRecipient.position)
            .limit(limit - len(chosen))
            .with_for_update(skip_locked=True)
        )
        chosen += (await session.scalars(fresh)).all()
    return chosen


async def numbers_in_live_calls(
    session: AsyncSession, user_id: str, numbers: list[str]
) -> set[str]:
    if not numbers:
        return set()
    query = select(Call.to_number).where(
        Call.user_id == user_id, Call.to_number.in_(numbers), Call.status.in_(LIVE_STATUSES)
    )
    return set((await session.scalars(query)).all())


def pace(number: PhoneNumber, count: int, now: datetime) -> list[datetime]:
    """Dial times `1 / calls_per_second` apart, continuing after the number's last reservation."""
    step = timedelta(seconds=1 / max(number.calls_per_second, 0.001))
    start = max(now, number.next_dial_at or now)
    times = [start + step * i for i in range(count)]
    number.next_dial_at = start + step * count
    return times


def slots_for(campaign: Campaign, counts: dict[str, int], number: PhoneNumber) -> int:
    free = campaign.max_concurrency - counts["dialing"] - counts["in_progress"]
    within_horizon = max(1, int(number.calls_per_second * PACING_HORIZON.total_seconds()))
    return max(0, min(free, within_horizon))


async def claim(
    session: AsyncSession, campaign: Campaign, worker_id: str, now: datetime, lease: timedelta
) -> list[DialJob]:
    """Claim what the campaign (locked by the caller) may dial now."""
    counts = (await campaign_repository.read_counts(session, [campaign.id]))[campaign.id]
    number = (
        await session.scalars(
            select(PhoneNumber).where(PhoneNumber.id == campaign.phone_number_id).with_for_update()
        )
    ).one()
    limit = slots_for(campaign, counts, number)
    if limit == 0:
        return []
    recipients = await due_recipients(session, campaign.id, now, limit)
    busy = await numbers_in_live_calls(
        session, campaign.user_id, [r.phone_number for r in recipients]
    )
    deltas: dict[str, int] = {}
    ready: list[CampaignRecipient] = []
    for recipient in recipients:
        if recipient.phone_number in busy:
            recipient.next_attempt_at = now + BUSY_NUMBER_DEFERRAL
            recipient.status_reason = "waiting: another call to this number is live"
            continue
        busy.add(recipient.phone_number)
        deltas[recipient.status] = deltas.get(recipient.status, 0) - 1
        ready.append(recipient)
    jobs = [
        _open_call(session, campaign, number, recipient, worker_id, now + lease, dial_at)
        for recipient, dial_at in zip(ready, pace(number, len(ready), now), strict=True)
    ]
    if jobs:
        deltas.update({"dialing": len(jobs), "calls_placed": len(jobs), "calls_active": len(jobs)})
        await session.flush()
        await campaign_repository.add_counts(session, campaign.id, deltas)
    return jobs


def _open_call(
    session: AsyncSession,
    campaign: Campaign,
    number: PhoneNumber,
    recipient: CampaignRecipient,
    worker_id: str,
    lease_until: datetime,
    dial_at: datetime,
) -> DialJob:
    secret, secret_hash = new_secret()
    recipient.attempts += 1
    call = Call(
        id=new_id("call"),
        user_id=campaign.user_id,
        campaign_id=campaign.id,
        recipient_id=recipient.id,
        attempt=recipient.attempts,
        phone_number_id=number.id,
        assistant_id=campaign.assistant_id,
        provider=number.provider,
        direction="outbound",
        to_number=recipient.phone_number,
        from_number=number.phone_number,
        status="queued",
        secret_hash=secret_hash,
        lease_owner=worker_id,
        lease_expires_at=lease_until,
    )
    session.add(call)
    recipient.status = "dialing"
    recipient.last_call_id = call.id
    recipient.next_attempt_at = None
    recipient.status_reason = None
    return DialJob(
        call.id,
        campaign.id,
        number.id,
        recipient.phone_number,
        secret,
        dial_at,
        reset_breaker=campaign.rejected_in_a_row > 0,
    )
