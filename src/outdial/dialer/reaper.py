"""The safety net: nothing the dialer started is ever left hanging.

Every few seconds: claims whose worker died before dialing are given back; dials whose
outcome is unknown and that no callback ever confirmed are looked for in the provider's
list of calls, and ended as `lost` when it has none; calls the
provider has gone silent about are reconciled by asking it; campaigns past their
scheduleEndTime expire; campaigns with nothing left to dial complete.

A provider account that cannot answer (down, unreachable, limiting the rate) is asked
nothing more in that round: it would otherwise cost each of the round's calls its requests'
timeouts (15 s each), one after another, and hold up the schedule ends and completions that
follow. Its other calls wait, untouched, for the next round. The calls of one account are
asked about one after another (so such an account is asked once); different accounts side by
side (`ACCOUNTS_AT_ONCE`), so that many accounts of a provider that is down cost a round
about one timeout for every `ACCOUNTS_AT_ONCE` of them, not one each.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from outdial.database import write_transaction
from outdial.dialer import control, store
from outdial.models import Call, Campaign, PhoneNumber
from outdial.telephony.base import UNREADABLE, CallState, DialError, DialErrorKind, ProviderCall
from outdial.telephony.registry import Carriers, UnreadableCredentials

log = logging.getLogger("outdial.dialer")
BATCH = 200
ACCOUNTS_AT_ONCE = 8  # provider accounts a round asks questions of at the same time


@dataclass(frozen=True)
class Patience:
    """How long the reaper waits before it steps in."""

    unconfirmed: timedelta = timedelta(seconds=60)  # a dial sent by a dead worker, no callback
    silent_ringing: timedelta = timedelta(seconds=120)  # no news of a call not yet answered
    silent_live: timedelta = timedelta(minutes=10)  # no news of an answered call
    # No provider keeps a call up longer than a day (Twilio's longest time limit, for the
    # call and for a transfer's <Dial>; outdial dials with an hour's): a call dialed longer
    # ago than that is over, whatever the provider (does not) say.
    longest_call: timedelta = timedelta(hours=24, minutes=10)


Sessions = async_sessionmaker[AsyncSession]
Account = tuple[str, str]  # (provider, its account id): the account a number dials through
# What a provider answers for the whole account, whichever call was asked about: after one,
# the account's other calls wait for the next round. (An unreadable answer or a refusal may
# be the one call's: those are asked about one by one, as before.)
ACCOUNT_WIDE = {DialErrorKind.UNAVAILABLE, DialErrorKind.UNREACHABLE, DialErrorKind.RATE_LIMITED}


def _whole_account(error: DialError) -> bool:
    return error.kind in ACCOUNT_WIDE and error.code != UNREADABLE


def _account(carriers: Carriers, number: PhoneNumber) -> Account:
    try:
        secrets = carriers.credentials(number)
    except UnreadableCredentials:  # (refused when asked: `for_number` raises it again)
        return (number.provider, number.id)
    return (number.provider, secrets.get("account_sid") or secrets.get("auth_id") or number.id)


async def _numbers(sessionmaker: Sessions, ids: Sequence[str]) -> dict[str, PhoneNumber]:
    """The caller number of each of these calls (a call whose number is gone has none)."""
    if not ids:
        return {}
    async with sessionmaker() as session:
        rows = await session.execute(
            select(Call.id, PhoneNumber)
            .join(PhoneNumber, PhoneNumber.id == Call.phone_number_id)
            .where(Call.id.in_(ids))
        )
        return {call_id: number for call_id, number in rows.all()}


# Asks the provider about one call, given its caller number (None: gone) and that
# number's account.
Ask = Callable[[str, PhoneNumber | None, Account], Awaitable[None]]


async def _account_by_account(
    sessionmaker: Sessions, carriers: Carriers, ids: Sequence[str], ask: Ask
) -> None:
    """`ask` about each call: those of one provider account one after another, in order;
    up to `ACCOUNTS_AT_ONCE` accounts at the same time. (A call without a number is its own.)"""
    numbers = await _numbers(sessionmaker, ids)
    accounts: dict[Account, list[str]] = {}
    for call_id in ids:
        number = numbers.get(call_id)
        account = _account(carriers, number) if number is not None else ("", call_id)
        accounts.setdefault(account, []).append(call_id)
    room = asyncio.Semaphore(ACCOUNTS_AT_ONCE)

    async def one_account(account: Account, calls: list[str]) -> None:
        async with room:
            for call_id in calls:
                await ask(call_id, numbers.get(call_id), account)

    # Every account's questions run to their end even when another's fail (a call found
    # placed and marked for hang-up must be hung up); the round then ends on the first error.
    asked = (one_account(account, calls) for account, calls in accounts.items())
    done = await asyncio.gather(*asked, return_exceptions=True)
    for outcome in done:
        if isinstance(outcome, BaseException):
            raise outcome


async def reap(
    sessionmaker: Sessions, carriers: Carriers, now: datetime, patience: Patience = Patience()
) -> set[str]:
    """One round; returns the campaigns that may dial again."""
    woken: set[str] = set()
    failing: set[Account] = set()  # provider accounts that failed a question this round
    woken |= await _release_abandoned_claims(sessionmaker, now)
    woken |= await _end_unconfirmed_dials(
        sessionmaker, carriers, now, patience.unconfirmed, failing
    )
    woken |= await _reconcile_silent_calls(sessionmaker, carriers, now, patience, failing)
    await _end_schedules(sessionmaker, now)
    await _complete_finished(sessionmaker, now)
    return woken


async def _ids(sessionmaker: Sessions, query: object) -> list[str]:
    async with sessionmaker() as session:
        return list((await session.scalars(query)).all())  # type: ignore[call-overload]


async def _release_abandoned_claims(sessionmaker: Sessions, now: datetime) -> set[str]:
    """Claimed, never sent, and the claiming worker's lease has lapsed: give the attempt back."""
    ids = await _ids(
        sessionmaker,
        select(Call.id)
        .where(Call.status == "queued", Call.dial_started_at.is_(None), Call.lease_expires_at < now)
        .limit(BATCH),
    )
    woken = set()
    for call_id in ids:
        async with write_transaction(sessionmaker) as session:
            call = await store.lock_call(session, call_id)
            if (
                call
                and call.status == "queued"
                and call.dial_started_at is None
                and call.lease_expires_at
                and call.lease_expires_at < now
            ):
                await store.release_undialed(session, call, now, "worker_lost")
                woken.add(call.campaign_id or "")
    return woken - {""}


async def _end_unconfirmed_dials(
    sessionmaker: Sessions,
    carriers: Carriers,
    now: datetime,
    grace: timedelta,
    failing: set[Account],
) -> set[str]:
    """Sent (or maybe sent) by a worker that died, and no callback ever came: the provider
    is asked whether it has the call (`Provider.find`), and one it lists goes on as a sent
    dial (the silent calls' reconciliation asks about it from then on); else `lost`."""
    ids = await _ids(
        sessionmaker,
        select(Call.id)
        .where(
            Call.status == "queued",
            Call.dial_started_at.is_not(None),
            Call.provider_call_sid.is_(None),
            Call.lease_expires_at < now - grace,
        )
        .limit(BATCH),
    )

    def still_unconfirmed(call: store.CallRow) -> bool:  # (the sender may have just heard)
        return (
            call.status == "queued"
            and call.provider_call_sid is None
            and call.lease_expires_at is not None
            and call.lease_expires_at < now - grace
        )

    lost: list[str] = []

    async def ask(call_id: str, number: PhoneNumber | None, account: Account) -> None:
        async with sessionmaker() as session:
            call = await session.get(Call, call_id)
        if call is None or number is None or call.dial_started_at is None:
            lost.append(call_id)
            return
        if account in failing:
            return  # its provider account cannot answer this round: asked next round
        try:
            found = await control.find_placed(
                sessionmaker,
                carriers.for_number(number),
                user_id=call.user_id,
                to_number=call.to_number,
                from_number=number.phone_number,
                sent_at=call.dial_started_at,
            )
        except DialError as exc:
            # Asked again next round; after three times the patience, given up on.
            log.warning("could not ask the provider about the dial of %s: %s", call_id, exc)
            if _whole_account(exc):
                failing.add(account)
            if call.lease_expires_at is not None and call.lease_expires_at < now - 3 * grace:
                lost.append(call_id)
            return
        if found is None:
            lost.append(call_id)
            return
        async with write_transaction(sessionmaker) as session:
            locked = await store.lock_call(session, call_id)
            if locked is None or not still_unconfirmed(locked):
                return
            hang_up = await store.found_placed(session, locked, found, now)
        if hang_up:  # (stopped with `hangup_active`, or `PATCH /calls`, while unconfirmed)
            await control.hang_up_one(carriers, number, found)

    await _account_by_account(sessionmaker, carriers, ids, ask)
    return await _finish_each(sessionmaker, lost, CallState.FAILED, now, "lost", still_unconfirmed)


async def _finish_each(
    sessionmaker: Sessions,
    ids: list[str],
    state: CallState,
    now: datetime,
    reason: str,
    still: Callable[[store.CallRow], bool] = lambda _call: True,
    duration: int | None = None,
) -> set[str]:
    """End each call, if what selected it (`still`) holds of it once locked (`duration`:
    the provider's, when it told one)."""
    woken = set()
    for call_id in ids:
        async with write_transaction(sessionmaker) as session:
            call = await store.lock_call(session, call_id)
            if (
                call is not None
                and still(call)
                and await store.finish_call(
                    session, call, state, now, reason=reason, duration=duration
                )
            ):
                woken.add(call.campaign_id or "")
    return woken - {""}


async def _reconcile_silent_calls(
    sessionmaker: Sessions,
    carriers: Carriers,
    now: datetime,
    patience: Patience,
    failing: set[Account],
) -> set[str]:
    """Live calls without news for too long: ask the provider, else end them as `lost`."""
    last_news = func.coalesce(Call.last_event_at, Call.dial_started_at, Call.created_at)
    silent = (
        select(Call.id)
        .where(
            (
                (Call.status.in_(("initiated", "ringing")))
                & (last_news < now - patience.silent_ringing)
            )
            | ((Call.status == "in_progress") & (last_news < now - patience.silent_live))
        )
        .limit(BATCH)
    )
    woken: set[str] = set()
    over = now - patience.longest_call

    async def ask(call_id: str, number: PhoneNumber | None, account: Account) -> None:
        nonlocal woken
        waits, seen = await _ask_provider(
            sessionmaker, carriers, call_id, number, account, failing, over
        )
        if waits:
            return
        if seen is None:
            woken |= await _finish_each(sessionmaker, [call_id], CallState.FAILED, now, "lost")
        elif seen.state in (
            CallState.QUEUED,
            CallState.INITIATED,
            CallState.RINGING,
            CallState.IN_PROGRESS,
        ):
            async with write_transaction(sessionmaker) as session:
                call = await session.get(Call, call_id)
                if call is not None:
                    call.last_event_at = now
        else:
            told = seen.duration_seconds
            woken |= await _finish_each(
                sessionmaker, [call_id], seen.state, now, "reconciled", duration=told
            )

    await _account_by_account(sessionmaker, carriers, await _ids(sessionmaker, silent), ask)
    return woken


async def _ask_provider(
    sessionmaker: Sessions,
    carriers: Carriers,
    call_id: str,
    number: PhoneNumber | None,
    account: Account,
    failing: set[Account],
    over: datetime,
) -> tuple[bool, ProviderCall | None]:
    """Whether the call waits for the next round (its provider account could not answer
    earlier in this one), and else the call as the provider says (None: unknown to it, no
    number or provider id to ask with, or dialed before `over` and the provider cannot say:
    then it is over however it ended)."""
    async with sessionmaker() as session:
        call = await session.get(Call, call_id)
    if call is None or number is None or not call.provider_call_sid:
        return False, None
    if account in failing:
        return True, None
    try:
        seen = await carriers.for_number(number).fetch(call.provider_call_sid)
    except DialError as exc:
        log.warning("could not reconcile %s: %s", call_id, exc)
        if _whole_account(exc):
            failing.add(account)
        if (call.dial_started_at or call.created_at) < over:
            return False, None  # past any call's time limit: `lost`
        return False, ProviderCall(CallState.IN_PROGRESS)  # ask again later, not guess
    return False, seen


async def _end_schedules(sessionmaker: Sessions, now: datetime) -> None:
    ids = await _ids(
        sessionmaker,
        select(Campaign.id).where(
            Campaign.status.in_(("running", "paused")), Campaign.schedule_end_time <= now
        ),
    )
    for campaign_id in ids:
        async with write_transaction(sessionmaker) as session:
            campaign = (
                await session.scalars(
                    select(Campaign).where(Campaign.id == campaign_id).with_for_update()
                )
            ).one_or_none()
            if campaign and campaign.status in ("running", "paused"):
                await store.expire_waiting(session, campaign, now)


async def _complete_finished(sessionmaker: Sessions, now: datetime) -> None:
    ids = await _ids(
        sessionmaker, select(Campaign.id).where(Campaign.status.in_(("running", "paused")))
    )
    for campaign_id in ids:
        async with write_transaction(sessionmaker) as session:
            await store.complete_if_done(session, campaign_id, now)
