"""How an attempt's end changes the database: the call, its recipient, and the counters.

Lock order, everywhere: a call row, then its campaign row, then recipient rows, then the
counter rows in name order (`add_counts` sorts them). Claims and lifecycle changes lock no
existing call. Keeping one order means concurrent claims, callbacks and lifecycle changes
can wait for each other but never deadlock.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from outdial.campaign import repository as campaign_repository
from outdial.campaign.state import RECIPIENT_ACTIVE
from outdial.dialer.rules import Decision, after_attempt, attempt_outcome
from outdial.models import Call, Campaign, CampaignRecipient
from outdial.telephony.base import FINAL_STATES, CallState

ENDED_REASONS = {
    "completed": "completed",
    "voicemail": "voicemail",
    "no_answer": "no_answer",
    "busy": "busy",
    "failed": "failed",
    "cancelled": "cancelled",
}


async def lock_campaign_shared(session: AsyncSession, campaign_id: str) -> Campaign | None:
    """Hold the campaign against stop/pause while an attempt's end is written."""
    query = select(Campaign).where(Campaign.id == campaign_id).with_for_update(read=True)
    return (await session.scalars(query)).one_or_none()


async def lock_call(session: AsyncSession, call_id: str) -> Call | None:
    return (
        await session.scalars(select(Call).where(Call.id == call_id).with_for_update())
    ).one_or_none()


async def lock_recipient(session: AsyncSession, recipient_id: int) -> CampaignRecipient | None:
    query = select(CampaignRecipient).where(CampaignRecipient.id == recipient_id).with_for_update()
    return (await session.scalars(query)).one_or_none()


async def mark_answered(session: AsyncSession, call: Call, now: datetime) -> None:
    """The call is live: its recipient moves from dialing to in_progress."""
    if call.answered_at is None:
        call.answered_at = now
    if call.recipient_id is None or call.campaign_id is None:
        return
    recipient = await lock_recipient(session, call.recipient_id)
    if (
        recipient is not None
        and recipient.status == "dialing"
        and recipient.last_call_id == call.id
    ):
        recipient.status = "in_progress"
        await campaign_repository.add_counts(
            session, call.campaign_id, {"dialing": -1, "in_progress": 1}
        )


async def finish_call(
    session: AsyncSession,
    call: Call,
    state: CallState,
    now: datetime,
    *,
    reason: str | None = None,
    duration: int | None = None,
) -> bool:
    """End a call (locked by the caller) and decide its recipient's next step.

    Returns False when the call had already ended: finishing is idempotent.
    """
    if call.status in FINAL_STATES:
        return False
    call.status = state
    call.ended_at = now
    call.lease_owner = call.lease_expires_at = None
    if duration is not None:
        call.duration_seconds = duration
    elif call.answered_at is not None:
        call.duration_seconds = max(0, round((now - call.answered_at).total_seconds()))
    outcome = attempt_outcome(state, call.answered_by, call.answered_at is not None)
    call.ended_reason = (reason or ENDED_REASONS[outcome])[:40]
    if call.recipient_id is not None and call.campaign_id is not None:
        await _settle_recipient(session, call, outcome, now)
    return True


async def _settle_recipient(session: AsyncSession, call: Call, outcome: str, now: datetime) -> None:
    assert call.campaign_id is not None and call.recipient_id is not None
    campaign = await lock_campaign_shared(session, call.campaign_id)
    recipient = await lock_recipient(session, call.recipient_id)
    deltas = {"calls_active": -1}
    if (
        campaign is not None
        and recipient is not None
        and recipient.last_call_id == call.id
        and recipient.status in ("dialing", "in_progress")
    ):
        decision = (
            Decision(outcome)
            if campaign.status == "completed"
            else after_attempt(
                campaign.retry_policy, outcome, recipient.attempts, now, campaign.schedule_end_time
            )
        )
        deltas[recipient.status] = deltas.get(recipient.status, 0) - 1
        deltas[decision.status] = deltas.get(decision.status, 0) + 1
        recipient.status = decision.status
        recipient.last_outcome = outcome
        recipient.next_attempt_at = decision.next_attempt_at
        recipient.status_reason = (
            f"retry {recipient.attempts + 1} after {outcome}" if decision.next_attempt_at else None
        )
    await campaign_repository.add_counts(session, call.campaign_id, deltas)


async def release_undialed(
    session: AsyncSession, call: Call, now: datetime, reason: str, detail: str | None = None
) -> None:
    """A claimed call that never reached the provider: the attempt is given back.

    `reason` is a short code for the call; `detail` (or the code) tells the recipient why.
    """
    if call.status in FINAL_STATES:
        return
    call.status = CallState.CANCELED
    call.ended_at = now
    call.ended_reason = reason[:40]
    call.lease_owner = call.lease_expires_at = None
    if call.recipient_id is None or call.campaign_id is None:
        return
    await lock_campaign_shared(session, call.campaign_id)
    recipient = await lock_recipient(session, call.recipient_id)
    deltas = {"calls_active": -1, "calls_placed": -1}
    if (
        recipient is not None
        and recipient.last_call_id == call.id
        and recipient.status == "dialing"
    ):
        recipient.attempts -= 1
        recipient.status = "pending" if recipient.attempts == 0 else "retry_scheduled"
        recipient.next_attempt_at = None if recipient.attempts == 0 else now
        recipient.status_reason = (detail or reason)[:200]
        deltas.update({"dialing": -1, recipient.status: 1})
    await campaign_repository.add_counts(session, call.campaign_id, deltas)


async def nothing_left(sessionmaker: async_sessionmaker[AsyncSession], campaign_id: str) -> bool:
    """A cheap read: could the campaign be complete? (`complete_if_done` decides under lock.)"""
    async with sessionmaker() as session:
        counts = (await campaign_repository.read_counts(session, [campaign_id]))[campaign_id]
    return not any(counts[status] for status in RECIPIENT_ACTIVE)


async def complete_if_done(session: AsyncSession, campaign_id: str, now: datetime) -> bool:
    """Complete a campaign no recipient of which can ever dial again (its own transaction)."""
    campaign = (
        await session.scalars(select(Campaign).where(Campaign.id == campaign_id).with_for_update())
    ).one_or_none()
    if campaign is None or campaign.status not in ("running", "paused"):
        return False
    counts = (await campaign_repository.read_counts(session, [campaign_id]))[campaign_id]
    if any(counts[status] for status in RECIPIENT_ACTIVE):
        return False
    campaign.status = "completed"
    campaign.ended_reason = "all_recipients_done"
    campaign.completed_at = now
    return True


async def expire_waiting(session: AsyncSession, campaign: Campaign, now: datetime) -> None:
    """Schedule over: waiting recipients expire and the campaign completes (live calls finish)."""
    deltas = await campaign_repository.end_waiting(
        session, campaign.id, "expired", "schedule ended"
    )
    await campaign_repository.add_counts(session, campaign.id, deltas)
    campaign.status = "completed"
    campaign.ended_reason = "schedule_ended"
    campaign.completed_at = now
