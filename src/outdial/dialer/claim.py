"""Claiming: the one short transaction that turns due recipients into calls.

Take the campaign's claim lock (a transaction-scoped advisory lock tried without waiting:
a campaign another worker is claiming is skipped, not waited for) and its row `FOR SHARE`
(stop and pause wait for the claim; the ends of calls, which hold it `FOR SHARE` too, do
not), compute free slots from the transactional counters, lock the caller number for
pacing, take due recipients (retries first, then by position) with `FOR UPDATE SKIP
LOCKED`, create their call rows, commit. The provider is called later, outside any
transaction. SQLite (one process) runs the same statements without the locks.
"""

from __future__ import annotations

import functools
from collections.abc import Collection
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Select, bindparam, func, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from outdial.campaign import hours
from outdial.campaign import repository as campaign_repository
from outdial.campaign.service import amd_timeout
from outdial.dialer import store
from outdial.do_not_call import service as do_not_call
from outdial.ids import new_id
from outdial.models import Assistant, Call, Campaign, CampaignCount, CampaignRecipient, PhoneNumber
from outdial.models.pre_dial_check import PreDialCheck
from outdial.pre_dial.service import PreDialRequest
from outdial.secrets_store import CallSecrets
from outdial.webhook import events as webhook_events

PACING_HORIZON = timedelta(seconds=2)
MAX_BATCHES = 5  # due-recipient queries per claim round when some must be put off
BUSY_NUMBER_DEFERRAL = timedelta(seconds=30)


@dataclass(frozen=True)
class DialJob:
    """A claimed attempt, ready to be sent at `dial_at` with no further reads."""

    call_id: str
    campaign_id: str | None
    number: PhoneNumber  # the caller number, as read when the call was opened
    to_number: str
    secret: str
    dial_at: datetime
    machine_detection_timeout: int
    reset_breaker: bool = False  # the campaign had refused dials: a success resets the count
    window: hours.Window | None = None  # calling hours, checked again at the moment of the dial
    pre_dial: PreDialRequest | None = None  # the account's pre-dial check is asked this
    # The last job of a round that left slots it could not fill yet (pacing, or the batch
    # limit): once it is sent, the campaign is claimed again.
    claim_again: bool = False


@dataclass(frozen=True)
class Dial:
    """What every dial of one claim round shares."""

    machine_detection_timeout: int
    window: hours.Window | None
    pre_dial: bool  # the account has a pre-dial check
    lease: timedelta  # each claim's, from its paced moment
    call_secrets: CallSecrets


@dataclass(frozen=True)
class Round:
    """What a claim round took: its jobs, and whether the campaign should be claimed again at
    once though it took none (every recipient it looked at was put off, and more may be due
    behind them; with jobs, the last one says so, `DialJob.claim_again`)."""

    jobs: list[DialJob]
    again: bool = False


CLAIM_LOCKS = 0x6F64  # the advisory-lock namespace of claims (the key is the campaign id's hash)


@dataclass(frozen=True)
class Claimable:
    """A running campaign whose claim lock this transaction holds, with what its dials need."""

    campaign: Campaign
    assistant: Assistant | None
    pre_dial: bool  # the account has a pre-dial check


ELSEWHERE: Literal["elsewhere"] = "elsewhere"  # running, and another transaction is claiming it


async def lock_running_campaign(
    session: AsyncSession, campaign_id: str
) -> Claimable | Literal["elsewhere"] | None:
    """The campaign if it is running and no other worker is claiming it right now;
    `ELSEWHERE` if it is running and another is; one statement (the assistant and the
    pre-dial check are read with it)."""
    query = _running_campaign(session.get_bind().dialect.name)
    row = (await session.execute(query, {"campaign_id": campaign_id})).first()
    if row is None:
        return None
    if not row.claimed:
        return ELSEWHERE
    return Claimable(row.Campaign, row.Assistant, row.pre_dial)


@functools.cache
def _running_campaign(dialect: str) -> Select[Any]:
    campaign_id = bindparam("campaign_id")
    has_pre_dial = (
        select(PreDialCheck.user_id).where(PreDialCheck.user_id == Campaign.user_id).exists()
    )
    query = (
        select(Campaign, Assistant, has_pre_dial.label("pre_dial"))
        .outerjoin(Assistant, Assistant.id == Campaign.assistant_id)
        .where(Campaign.id == campaign_id, Campaign.status == "running")
    )
    if dialect != "postgresql":
        return query.add_columns(true().label("claimed"))  # SQLite writes one at a time
    # Tried for the one row found, and keyed by the given id, not the column: only this
    # campaign's claim lock can be taken.
    claim_lock = func.pg_try_advisory_xact_lock(CLAIM_LOCKS, func.hashtext(campaign_id))
    return query.add_columns(claim_lock.label("claimed")).with_for_update(of=Campaign, read=True)


CLAIM_COUNTS = ("dialing", "in_progress", "pending", "retry_scheduled")


_NUMBER_AND_COUNTS = (
    select(
        PhoneNumber,
        *[
            select(func.coalesce(func.sum(CampaignCount.value), 0))
            .where(
                CampaignCount.campaign_id == bindparam("campaign_id"), CampaignCount.name == name
            )
            .scalar_subquery()
            .label(name)
            for name in CLAIM_COUNTS
        ],
    )
    .where(PhoneNumber.id == bindparam("number_id"))
    .with_for_update(of=PhoneNumber)
)


async def lock_number(
    session: AsyncSession, campaign: Campaign
) -> tuple[PhoneNumber, dict[str, int]]:
    """The campaign's caller number, locked for pacing, and the campaign's `CLAIM_COUNTS`
    counters, in one statement.

    Read after the claim lock was taken, so every earlier claim's changes are in them. Should
    the number's lock wait (a claim of another campaign on it), what changes the counters
    meanwhile is the end of a call, which only frees a slot: the claim fills fewer slots
    than it could, never more.
    """
    params = {"number_id": campaign.phone_number_id, "campaign_id": campaign.id}
    row = (await session.execute(_NUMBER_AND_COUNTS, params)).one()
    return row.PhoneNumber, {name: int(row._mapping[name]) for name in CLAIM_COUNTS}


async def lock_for_change(session: AsyncSession, campaign_id: str) -> None:
    """Upgrade a claim's hold on the campaign row to `FOR UPDATE`, to change the campaign.

    Before any recipient or counter row is written: the ends of calls hold the row
    `FOR SHARE` and then wait for those, so an upgrade after them could deadlock.
    """
    await session.execute(select(Campaign.id).where(Campaign.id == campaign_id).with_for_update())


async def due_recipients(
    session: AsyncSession,
    campaign_id: str,
    now: datetime,
    limit: int,
    waiting: Collection[str] = ("retry_scheduled", "pending"),
) -> list[CampaignRecipient]:
    """Up to `limit` recipients to dial now: retries that are due first, then by position.
    `waiting`: the statuses the campaign has recipients in (the counters say), so a query
    that could find nothing is not sent."""
    chosen: list[CampaignRecipient] = []
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
    if "retry_scheduled" in waiting:
        chosen += (await session.scalars(retries)).all()
    if len(chosen) < limit and "pending" in waiting:
        chosen += (await session.scalars(next_pending(campaign_id, now, limit - len(chosen)))).all()
    return chosen


def next_pending(campaign_id: str, now: datetime, limit: int) -> Select[tuple[CampaignRecipient]]:
    """The first `limit` pending recipients by position that are due (the partial index
    `ix_campaign_recipients_pending` finds them without passing the ones dialed before)."""
    return (
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
        .limit(limit)
        .with_for_update(skip_locked=True)
    )


def pace(number: PhoneNumber, count: int, now: datetime) -> list[datetime]:
    """Dial times `1 / calls_per_second` apart, continuing after the number's last reservation."""
    step = timedelta(seconds=1 / max(number.calls_per_second, 0.001))
    start = max(now, number.next_dial_at or now)
    times = [start + step * i for i in range(count)]
    number.next_dial_at = start + step * count
    return times


def slots_for(
    campaign: Campaign, counts: dict[str, int], number: PhoneNumber, now: datetime
) -> tuple[int, bool]:
    """The slots a round may fill, and whether pacing (not concurrency) limits them.

    Pacing reserves dial times up to `PACING_HORIZON` ahead, counting the number's
    reservations already made (by earlier rounds, other campaigns on the number): rounds
    more often than the reservations are used up (the sweep, several campaigns) would
    otherwise reserve ever further ahead, claiming people long before their dials."""
    free = campaign.max_concurrency - counts["dialing"] - counts["in_progress"]
    ahead = (number.next_dial_at - now).total_seconds() if number.next_dial_at else 0.0
    room = PACING_HORIZON.total_seconds() - max(0.0, ahead)
    within_horizon = max(1, int(number.calls_per_second * room)) if room > 0 else 0
    return max(0, min(free, within_horizon)), within_horizon < free


async def claim(
    session: AsyncSession,
    claimable: Claimable,
    worker_id: str,
    now: datetime,
    lease: timedelta,
    call_secrets: CallSecrets,
    *,
    daily_cap: int = 0,
) -> Round:
    """Claim what the campaign (its claim lock taken by the caller) may dial now.

    Recipients that may not be dialed now (their number is on a live call, over the
    account's daily cap, or their local clock is outside the calling hours) are put off
    with a reason; numbers on the account's do-not-call list are skipped. The next due
    ones are taken in their place, a few batches at most per round.
    """
    campaign = claimable.campaign
    number, counts = await lock_number(session, campaign)
    free, paced = slots_for(campaign, counts, number, now)
    if free == 0:
        return Round([])
    window = hours.parse(campaign.calling_hours)
    deltas: dict[str, int] = {}
    jobs: list[DialJob] = []
    dial = Dial(
        amd_timeout(campaign, claimable.assistant),
        window,
        claimable.pre_dial,
        lease,
        call_secrets,
    )
    ended: list[int] = []
    used_up = False  # put-off recipients used up the batches
    waiting = [status for status in ("retry_scheduled", "pending") if counts[status]]
    for batch in range(MAX_BATCHES):
        recipients = await due_recipients(session, campaign.id, now, free - len(jobs), waiting)
        ready = await _dialable(session, campaign, window, recipients, now, deltas, daily_cap)
        ended += [r.id for r in recipients if r.status in ("skipped", "expired")]
        jobs += [
            _open_call(session, campaign, number, recipient, worker_id, now, at, dial)
            for recipient, at in zip(ready, pace(number, len(ready), now), strict=True)
        ]
        await session.flush()  # the next batch's query must see these changes
        if len(ready) == len(recipients) or len(jobs) == free:
            break
        used_up = batch == MAX_BATCHES - 1
    if jobs and (paced or used_up):
        jobs[-1] = replace(jobs[-1], claim_again=True)
    if jobs:
        deltas.update({"dialing": len(jobs), "calls_placed": len(jobs), "calls_active": len(jobs)})
    may_complete = bool(deltas) and not jobs  # the last ones were skipped
    if may_complete:
        await lock_for_change(session, campaign.id)
    await campaign_repository.add_counts(session, campaign.id, deltas)
    await webhook_events.emit_recipients_final(session, campaign.user_id, ended)
    if may_complete:
        await store.complete_if_done(session, campaign.id, now)
    return Round(jobs, again=used_up and not jobs)


async def _dialable(
    session: AsyncSession,
    campaign: Campaign,
    window: hours.Window | None,
    recipients: list[CampaignRecipient],
    now: datetime,
    deltas: dict[str, int],
    daily_cap: int,
) -> list[CampaignRecipient]:
    """The recipients that may be dialed now; the others are put off (or end) with a reason."""
    numbers = [r.phone_number for r in recipients]
    blocked = await do_not_call.screened(
        session, campaign.user_id, numbers, now, daily_cap=daily_cap, live=True
    )
    busy = {n for n, why in blocked.items() if do_not_call.LIVE in why}
    listed = {n for n, why in blocked.items() if do_not_call.DNC in why}
    capped = [n for n, why in blocked.items() if do_not_call.DAILY_CAP in why and n not in listed]
    frees_at = await do_not_call.daily_cap_frees_at(
        session, campaign.user_id, capped, now, daily_cap=daily_cap
    )
    ready: list[CampaignRecipient] = []
    for recipient in recipients:
        number = recipient.phone_number
        if number in busy:
            recipient.next_attempt_at = now + BUSY_NUMBER_DEFERRAL
            recipient.status_reason = "waiting: another call to this number is live"
            continue
        if number in listed:
            _end(recipient, "skipped", "dnc", deltas)
            continue
        if number in frees_at:
            recipient.next_attempt_at = frees_at[number]
            recipient.status_reason = (
                f"waiting: {daily_cap} calls to this number in 24 hours (the daily cap)"
            )
            continue
        wait = hours.check(window, recipient.phone_number, now)
        if wait is not None:
            _put_off(campaign, recipient, wait, deltas)
            continue
        busy.add(recipient.phone_number)
        deltas[recipient.status] = deltas.get(recipient.status, 0) - 1
        ready.append(recipient)
    return ready


def _put_off(
    campaign: Campaign, recipient: CampaignRecipient, wait: hours.Wait, deltas: dict[str, int]
) -> None:
    """Outside its calling hours: wait for the window, or end when the window never comes
    (`skipped`) or comes only after the schedule's end (`expired`)."""
    end = campaign.schedule_end_time
    final = (
        "skipped"
        if wait.until is None
        else "expired"
        if end is not None and wait.until >= end
        else None
    )
    recipient.status_reason = wait.reason[:200]
    if final is None:
        recipient.next_attempt_at = wait.until
        return
    reason = f"{wait.reason}, after the schedule ends" if final == "expired" else wait.reason
    _end(recipient, final, reason, deltas)


def _end(recipient: CampaignRecipient, status: str, reason: str, deltas: dict[str, int]) -> None:
    """The recipient will never be dialed by this campaign: a final status and why."""
    deltas[recipient.status] = deltas.get(recipient.status, 0) - 1
    deltas[status] = deltas.get(status, 0) + 1
    recipient.status = status
    recipient.status_reason = reason[:200]
    recipient.next_attempt_at = None


def _open_call(
    session: AsyncSession,
    campaign: Campaign,
    number: PhoneNumber,
    recipient: CampaignRecipient,
    worker_id: str,
    now: datetime,
    dial_at: datetime,
    dial: Dial,
) -> DialJob:
    """The attempt's call, created as of `now`: the moment the claim checked the schedule,
    the calling hours and the daily cap (not when the row reached the database), so a call
    claimed just before the schedule's end never shows a later time."""
    call_id = new_id("call")
    secret, secret_hash = dial.call_secrets.new(call_id, number.provider, number.id)
    recipient.attempts += 1
    call = Call(
        id=call_id,
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
        lease_expires_at=dial_at + dial.lease,  # (the claim waits for its moment)
        created_at=now,
    )
    session.add(call)
    recipient.status = "dialing"
    recipient.last_call_id = call.id
    recipient.next_attempt_at = None
    recipient.status_reason = None
    return DialJob(
        call.id,
        campaign.id,
        number,
        recipient.phone_number,
        secret,
        dial_at,
        dial.machine_detection_timeout,
        reset_breaker=campaign.rejected_in_a_row > 0,
        window=dial.window,
        pre_dial=PreDialRequest(
            phone_number=recipient.phone_number,
            campaign_id=campaign.id,
            recipient_id=f"rcp_{recipient.id}",
            call_id=call.id,
            attempt=recipient.attempts,
            metadata=dict(recipient.recipient_metadata or {}),
        )
        if dial.pre_dial
        else None,
    )
