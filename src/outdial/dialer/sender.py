"""Sending one claimed call to its provider, and recording what the provider said.

Used by the dialer for campaign calls and by `POST /calls` for single calls. Every step is
its own short transaction; the provider is called with no transaction open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Update, bindparam, case, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from outdial.campaign import hours
from outdial.database import read_alone, run, write_alone, write_alone_first, write_transaction
from outdial.dialer import control, store
from outdial.dialer.claim import DialJob
from outdial.dialer.reaper import Patience
from outdial.dialer.store import calls, campaigns
from outdial.do_not_call import repository as do_not_call
from outdial.models import Campaign, PhoneNumber, utcnow
from outdial.pre_dial.service import PreDialChecker
from outdial.telephony.base import (
    PROVIDER_REFUSED,
    CallState,
    DialError,
    DialErrorKind,
    DialRequest,
    Provider,
)
from outdial.telephony.registry import Carriers
from outdial.webhook import events as webhook_events
from outdial.webhook import repository as webhook_repository

log = logging.getLogger("outdial.dialer")
BREAKER_THRESHOLD = 3
MAX_SEND_TRIES = 6
# A dial whose outcome is unknown (5xx, broken connection) is only sent again if no callback
# has come for it within this long (providers report a call they placed within a second)
# and the provider does not list a call to the number made since it was first sent.
CALLBACK_GRACE_SECONDS = 2.0
# Tries of the provider's list of calls before a dial's outcome is left unknown.
LOOKUP_TRIES = 3
RETRY_SEND = frozenset(
    {DialErrorKind.RATE_LIMITED, DialErrorKind.UNAVAILABLE, DialErrorKind.UNREACHABLE}
)
# The call's reason when its every send was refused or failed without placing it.
NOT_PLACED_REASONS = {
    DialErrorKind.RATE_LIMITED: "rate_limited",
    DialErrorKind.UNAVAILABLE: "provider_unavailable",
    DialErrorKind.UNREACHABLE: "provider_unreachable",
}
# How long a stopping dialer waits for its dials on their way to the provider (their answers
# recorded) before it leaves the rest to the reaper: under the ten seconds a container or
# service manager gives a process between its SIGTERM and its SIGKILL.
DRAIN_SECONDS = 8.0


@dataclass(frozen=True)
class DialerSettings:
    public_base_url: str
    sweep_seconds: float = 1.0
    reap_seconds: float = 5.0
    lease: timedelta = timedelta(seconds=60)
    ring_timeout: int = 30
    time_limit: int = 3600
    patience: Patience = field(default_factory=Patience)
    daily_cap: int = 0  # calls per number per account in 24 hours; 0: no cap
    drain_seconds: float = DRAIN_SECONDS


@dataclass(frozen=True)
class Found:
    """What became of a dial the provider answered with an error that does not say "not
    placed": `placed` None when the provider cannot say; its id when it listed the call."""

    placed: bool | None
    provider_call_id: str | None = None


@dataclass(frozen=True)
class Refusal:
    """Why a dial was not sent: the call's reason, the recipient's (default: the same), and
    the recipient's final status when it ends there (`skipped`) rather than waits."""

    reason: str
    detail: str | None = None
    final: str | None = None


# A dial the dialer stopped before it was sent: its attempt back, due at once (another
# worker, or this one restarted, dials it).
STOPPED = Refusal("dialer_stopped", "the dialer stopped before the dial was sent")
# A call hung up (`PATCH /calls`) before its dial was sent: never placed, and its recipient
# is not dialed again for it (given back, it would be, seconds later).
HUNG_UP = Refusal("hangup_requested", "hung up before the dial was sent", final="cancelled")
_HUNG_UP = select(calls.c.hangup_requested).where(calls.c.id == bindparam("call_id"))


def callback_base(public_base_url: str, provider: str, call_id: str, secret: str) -> str:
    return f"{public_base_url.rstrip('/')}/telephony/{provider}/{call_id}/{secret}"


_NOW = bindparam("now", type_=calls.c.dial_started_at.type)
# The campaign still runs, its row read `FOR SHARE` (PostgreSQL): a pause or stop being
# written holds the row, so the gate waits for it and then reads what it committed. Read
# without the lock, the gate would see the row as it was before and let the dial through
# after the pause had looked for dials on their way (`control.settle`).
_RUNNING = (
    select(campaigns.c.id)
    .where(
        campaigns.c.id == calls.c.campaign_id,
        campaigns.c.status == "running",
        campaigns.c.schedule_end_time.is_(None) | (campaigns.c.schedule_end_time > _NOW),
    )
    .with_for_update(read=True)
    .exists()
)
_LEASE = bindparam("lease_until", type_=calls.c.lease_expires_at.type)


def _while_dialable(unsent: ColumnElement[bool], **values: Any) -> Update:
    """An UPDATE of the call (its lease renewed) that succeeds only while the call may be
    dialed: still queued and `unsent`, not hung up (`PATCH /calls`), its campaign still
    running, its number not on the account's do-not-call list."""
    return (
        update(calls)
        .where(
            calls.c.id == bindparam("call_id"),
            calls.c.status == "queued",
            unsent,
            calls.c.hangup_requested.is_(False),
            calls.c.campaign_id.is_(None) | _RUNNING,
            ~do_not_call.call_listed(),
        )
        .values(lease_expires_at=_LEASE, updated_at=_NOW, **values)
    )


# The dial gate: the call has not been through it yet, and may be dialed.
_GATE = _while_dialable(calls.c.dial_started_at.is_(None), dial_started_at=_NOW)
# Before a dial is sent again (after a 429 or an unreachable provider): still no provider
# id, and it may still be dialed (the wait may have been long).
_STILL = _while_dialable(calls.c.provider_call_sid.is_(None))
# The provider has the call: callbacks may already have moved it past `initiated`.
_SENT = (
    update(calls)
    .where(calls.c.id == bindparam("call_id"))
    .values(
        started_at=_NOW,
        updated_at=_NOW,
        status=case((calls.c.status == "queued", "initiated"), else_=calls.c.status),
        lease_owner=None,
        lease_expires_at=None,
        provider_call_sid=func.coalesce(
            calls.c.provider_call_sid, bindparam("sid", type_=calls.c.provider_call_sid.type)
        ),
    )
)

_STATUS = select(calls.c.status, calls.c.provider_call_sid).where(
    calls.c.id == bindparam("call_id")
)


def _heard(status: str, provider_call_sid: str | None) -> bool:
    """Whether the provider has been heard of for a call: a callback moved it on from
    `queued`, or its id is recorded."""
    return status != CallState.QUEUED.value or provider_call_sid is not None


# (A hang-up asked for while the dial was on its way had no provider id to act on.)
_SENT_STATUS = _SENT.returning(calls.c.status, calls.c.hangup_requested, calls.c.provider_call_sid)
_SENT_UNHEARD = _SENT.where(webhook_repository.no_endpoints(calls.c.user_id)).returning(
    calls.c.status, calls.c.hangup_requested, calls.c.provider_call_sid
)


class Sender:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        carriers: Carriers,
        settings: DialerSettings,
        pre_dial: PreDialChecker | None = None,
        stopping: asyncio.Event | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.carriers = carriers
        self.settings = settings
        self.pre_dial = pre_dial
        # Set when the dialer stops: a dial still waiting for its paced moment or for its
        # next send after a refusal is given back rather than sent.
        self.stopping = stopping or asyncio.Event()

    async def send(self, job: DialJob) -> bool:
        """Wait for the job's paced moment, pass the gate, dial; True when the provider took it."""
        if await self._stopped_within((job.dial_at - utcnow()).total_seconds()):
            await self._give_back(job, utcnow(), STOPPED)
            return False
        if job.pre_dial is not None and self.pre_dial is not None:
            decision = await self.pre_dial.allows(job.number.user_id, job.pre_dial)
            if not decision.allowed:
                reason = decision.reason or "pre_dial: refused"
                refusal = Refusal("pre_dial_refused", reason, final="skipped")
                await self._give_back(job, utcnow(), refusal)
                return False
        prepared = await self._pass_gate(job)
        if prepared is None:
            return False
        number, request = prepared
        try:
            provider = self.carriers.for_number(number)
        except DialError as unreadable:  # its credentials: refused, as the provider would
            return await self._dial_failed(job, unreadable)
        first_sent = utcnow()
        for attempt in range(1, MAX_SEND_TRIES + 1):
            try:
                provider_call_id = await provider.dial(request)
            except DialError as error:
                if error.kind is DialErrorKind.UNAVAILABLE:
                    # An error that does not say "not placed": did the call ring after all?
                    found = await self._look_for(job, provider, first_sent)
                    if found.placed is None:
                        # Nobody can say: not sent again (that could ring the person twice),
                        # the attempt spent.
                        return await self._dial_failed(job, error)
                    if found.placed:
                        await self._dial_sent(job, found.provider_call_id)
                        return True
                if error.kind not in RETRY_SEND:
                    return await self._dial_failed(job, error)
                # Not placed: refused for rate (429), no connection, or the provider's own
                # list shows no call.
                if attempt == MAX_SEND_TRIES:
                    # Never placed, so the attempt is not spent: the recipient is claimed
                    # again later (and backs off again).
                    reason = NOT_PLACED_REASONS[error.kind]
                    refusal = Refusal(reason, f"not placed in {attempt} tries: {error}")
                    await self._give_back(job, utcnow(), refusal, sent=True)
                    return await self._went_out_after_all(job)
                await self._back_off(job, error, attempt)
                if not await self._may_send_again(job):
                    return await self._went_out_after_all(job)
                continue
            await self._dial_sent(job, provider_call_id)
            return True
        return False

    async def _may_send_again(self, job: DialJob) -> bool:
        """After the wait, the gate's checks again: the campaign paused, stopped or past its
        schedule, the calling hours over or the number listed during the wait stop the dial
        here (a pause waits at most five seconds for dials on their way, `control.settle`,
        and a back-off may last longer), and so does a dialer that stopped during the wait.
        Nothing was placed, so the dial is given back as at the gate."""
        # The calling hours as they are now: an edit during a long back-off applies.
        if self.stopping.is_set():
            log.info("dial of %s not sent again: the dialer stopped", job.call_id)
            await self._give_back(job, utcnow(), STOPPED, sent=True)
            return False
        job = replace(job, window=await self._window_now(job))
        now = utcnow()
        refusal = self._outside_hours(job, now)
        if refusal is None:
            params = {"call_id": job.call_id, "now": now, "lease_until": now + self.settings.lease}
            if await write_alone(self.sessionmaker, _STILL, params) == 1:
                return True
            refusal = await self._refusal(job)
        log.info("dial of %s not sent again: %s", job.call_id, refusal.reason)
        await self._give_back(job, now, refusal, sent=True)
        return False

    async def _look_for(self, job: DialJob, provider: Provider, first_sent: datetime) -> Found:
        """Whether the provider placed a dial it answered with an error: a callback for it
        came during a short wait (the provider reports a call within a second), or the
        provider lists a call to the number from the caller number since the dial's first
        send that outdial does not know of. A provider that cannot list its calls leaves
        it unknown."""
        for look in range(LOOKUP_TRIES):
            await self._hold(job, CALLBACK_GRACE_SECONDS * 2**look)
            if await self._placed(job):
                return Found(True)
            try:
                found = await control.find_placed(
                    self.sessionmaker,
                    provider,
                    user_id=job.number.user_id,
                    to_number=job.to_number,
                    from_number=job.number.phone_number,
                    sent_at=first_sent,
                )
                break
            except DialError as error:
                log.warning("dial of %s: cannot tell if it was placed: %s", job.call_id, error)
        else:
            return Found(True) if await self._placed(job) else Found(None)
        if found:
            log.warning("dial of %s was placed despite the error: %s", job.call_id, found)
            return Found(True, found)
        return Found(await self._placed(job))  # (its first callback, just now)

    async def _went_out_after_all(self, job: DialJob) -> bool:
        """After a dial was stopped or given up: whether a callback came for it meanwhile
        (the provider's list had not shown the call yet), so it was neither given back nor
        ended (the give-back and `_dial_failed` look under the call's lock) and goes on as
        placed."""
        rows = await read_alone(self.sessionmaker, _STATUS, {"call_id": job.call_id})
        live = rows and rows[0].status not in webhook_events.FINAL_STATUSES
        if not live or not _heard(rows[0].status, rows[0].provider_call_sid):
            return False
        await self._dial_sent(job, None)
        return True

    async def _placed(self, job: DialJob) -> bool:
        """Whether the provider has the call after all: a callback moved it on from `queued`
        (an error answer or a broken connection does not say the call was not created, and
        dialing again would ring the person twice). A call ended meanwhile (hung up through
        the API, reaped) is not dialed again either."""
        rows = await read_alone(self.sessionmaker, _STATUS, {"call_id": job.call_id})
        return not rows or rows[0].status != CallState.QUEUED.value

    async def _pass_gate(self, job: DialJob) -> tuple[PhoneNumber, DialRequest] | None:
        """Mark the call as being sent if its campaign still runs and its number has not been
        put on the do-not-call list since the claim; else give the attempt back (a listed
        number's recipient ends `skipped`, `dnc`, as in the claim).

        Checked at the moment of the dial, not when the batch was claimed: one statement.
        """
        now = utcnow()
        refusal = self._outside_hours(job, now)  # the pacing delay carried it past the window
        if refusal is None:
            params = {"call_id": job.call_id, "now": now, "lease_until": now + self.settings.lease}
            if await write_alone(self.sessionmaker, _GATE, params) == 1:
                return job.number, self._dial_request(job)
            refusal = await self._refusal(job)
        await self._give_back(job, now, refusal)
        return None

    async def _window_now(self, job: DialJob) -> hours.Window | None:
        """The campaign's calling hours as stored now (a call of no campaign has none)."""
        if job.campaign_id is None:
            return job.window
        query = select(Campaign.calling_hours).where(Campaign.id == job.campaign_id)
        async with self.sessionmaker() as session:
            return hours.parse(await session.scalar(query))

    @staticmethod
    def _outside_hours(job: DialJob, now: datetime) -> Refusal | None:
        wait = hours.check(job.window, job.to_number, now) if job.window is not None else None
        return Refusal("outside_calling_hours", wait.reason) if wait is not None else None

    async def _refusal(self, job: DialJob) -> Refusal:
        """Why the gate (or its check before a send again) refused the dial."""
        async with self.sessionmaker() as session:
            if await session.scalar(_HUNG_UP, {"call_id": job.call_id}):
                return HUNG_UP
            listed = await do_not_call.is_listed(session, job.number.user_id, job.to_number)
        return Refusal("dnc", "dnc", final="skipped") if listed else Refusal("campaign_not_running")

    async def _give_back(
        self, job: DialJob, now: datetime, refusal: Refusal, *, sent: bool = False
    ) -> None:
        """The attempt back to its recipient: a dial that never passed the gate, or (`sent`)
        one whose every send the provider refused without placing it."""
        async with write_transaction(self.sessionmaker) as session:
            call = await store.lock_call(session, job.call_id)
            if call is None or call.provider_call_sid is not None:
                return
            if call.dial_started_at is None or (sent and call.status == CallState.QUEUED.value):
                await store.release_undialed(
                    session, call, now, refusal.reason, refusal.detail, final=refusal.final
                )

    def _dial_request(self, job: DialJob) -> DialRequest:
        return DialRequest(
            call_id=job.call_id,
            to_number=job.to_number,
            from_number=job.number.phone_number,
            callback_base=callback_base(
                self.settings.public_base_url, job.number.provider, job.call_id, job.secret
            ),
            machine_detection_timeout=job.machine_detection_timeout,
            ring_timeout=self.settings.ring_timeout,
            time_limit=self.settings.time_limit,
        )

    async def _back_off(self, job: DialJob, error: DialError, attempt: int) -> None:
        """Rate-limited or unreachable: wait and send again; the attempt is not spent."""
        pause = error.retry_after or min(30.0, 0.5 * 2**attempt) * random.uniform(0.5, 1.5)
        log.info("dial of %s deferred (%s); retrying in %.1fs", job.call_id, error, pause)
        await self._hold(job, pause, until_stopped=True)

    async def _hold(self, job: DialJob, seconds: float, *, until_stopped: bool = False) -> None:
        """Wait, the call's lease renewed past the wait (the reaper leaves the dial alone); if
        `until_stopped`, no longer than until the dialer stops."""
        async with write_transaction(self.sessionmaker) as session:
            await session.execute(
                update(calls)
                .where(calls.c.id == job.call_id)
                .values(
                    lease_expires_at=utcnow() + self.settings.lease + timedelta(seconds=seconds)
                )
            )
        if until_stopped:
            await self._stopped_within(seconds)
        else:
            await asyncio.sleep(seconds)

    async def _stopped_within(self, seconds: float) -> bool:
        """Wait `seconds`, or less if the dialer stops meanwhile: whether it has stopped."""
        if seconds > 0 and not self.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), seconds)
        return self.stopping.is_set()

    async def _dial_sent(self, job: DialJob, provider_call_id: str | None) -> None:
        """The provider has the call; callbacks may already have moved it past `initiated`."""
        # provider_call_id None: known only from the callbacks
        params = {"call_id": job.call_id, "now": utcnow(), "sid": provider_call_id}
        sent: Any = None
        if not job.reset_breaker:
            # One statement when the account has no endpoint to tell of `call.started`.
            sent = await write_alone_first(self.sessionmaker, _SENT_UNHEARD, params)
        if sent is None:
            async with write_transaction(self.sessionmaker) as session:
                sent = (await run(session, _SENT_STATUS, params)).first()
                # Ended already: its end wrote `call.started` (`store.finish_call`).
                if sent is not None and sent.status not in webhook_events.FINAL_STATUSES:
                    await webhook_events.emit_call(
                        session, job.call_id, "call.started", user_id=job.number.user_id
                    )
                if job.campaign_id and job.reset_breaker:
                    await session.execute(
                        update(campaigns)
                        .where(campaigns.c.id == job.campaign_id)
                        .values(rejected_in_a_row=0)
                    )
        if sent is not None and provider_call_id and sent.provider_call_sid != provider_call_id:
            # The call holds another provider call: this send placed a second one (an earlier
            # send's call, unlisted when looked for, has been heard of since). Hung up.
            log.warning("dial of %s placed a second call %s", job.call_id, provider_call_id)
            await control.hang_up_one(self.carriers, job.number, provider_call_id)
        if sent is not None and sent.hangup_requested and sent.provider_call_sid:
            # Hung up (a stop with `hangup_active`, `PATCH /calls`) while on its way.
            await control.hang_up_one(self.carriers, job.number, sent.provider_call_sid)

    async def _dial_failed(self, job: DialJob, error: DialError) -> bool:
        """The provider refused the dial, or cannot say whether it placed it: end the attempt,
        and trip the breaker if refusals keep on. Returns whether the dial goes on after all:
        one whose outcome was unknown and whose first callback came just now (seen under the
        call's lock) is placed."""
        now = utcnow()
        async with write_transaction(self.sessionmaker) as session:
            call = await store.lock_call(session, job.call_id)
            if call is None:
                return False
            # (After an earlier send whose 5xx hid a call the provider did not list yet.)
            heard = _heard(call.status, call.provider_call_sid)
            if not heard and error.kind is DialErrorKind.REJECTED:
                await store.release_undialed(
                    session, call, now, PROVIDER_REFUSED, f"provider refused the dial: {error}"
                )
            elif not heard:
                reason = (
                    "invalid_number"
                    if error.kind is DialErrorKind.INVALID_NUMBER
                    else "provider_error"
                )
                await store.finish_call(session, call, CallState.FAILED, now, reason=reason)
        if heard:
            return await self._went_out_after_all(job)
        log.warning("dial of %s failed: %s", job.call_id, error)
        if error.kind is DialErrorKind.REJECTED and job.campaign_id:
            async with write_transaction(self.sessionmaker) as session:
                await count_rejection(session, job.campaign_id, str(error))
        return False


async def count_rejection(session: AsyncSession, campaign_id: str, message: str) -> None:
    """The breaker: dials refused in a row pause the campaign with a reason a person can act on."""
    campaign = await _locked_campaign(session, campaign_id)
    if campaign is None:
        return
    campaign.rejected_in_a_row += 1
    campaign.last_rejection = message
    if campaign.rejected_in_a_row >= BREAKER_THRESHOLD:
        await _pause(
            session,
            campaign,
            f"Paused automatically: the provider refused {campaign.rejected_in_a_row} dials "
            f"in a row ({message}). Fix the phone number's credentials, then resume.",
        )


async def pause_for_account(
    session: AsyncSession, campaign_id: str, problem: str, dialed_at: datetime | None
) -> None:
    """The provider ended a call for a problem of the account (`CallEvent.account_problem`):
    every dial would end alike, so the campaign pauses at once, with the problem to fix.
    Not for a call dialed before the campaign was last resumed: the user resumed after
    that call (the problem mended, or to be seen again), and its late or repeated report
    says nothing of the dials since."""
    campaign = await _locked_campaign(session, campaign_id)
    if campaign is None:
        return
    if campaign.resumed_at and dialed_at and dialed_at < campaign.resumed_at:
        log.info("campaign %s: %s, for a call dialed before its resume", campaign_id, problem)
        return
    campaign.last_rejection = problem
    await _pause(
        session,
        campaign,
        f"Paused automatically: the provider refused a call because {problem}. "
        "Fix the account or the phone number, then resume.",
    )


async def _locked_campaign(session: AsyncSession, campaign_id: str) -> Campaign | None:
    query = select(Campaign).where(Campaign.id == campaign_id).with_for_update()
    return (await session.scalars(query)).one_or_none()


async def _pause(session: AsyncSession, campaign: Campaign, reason: str) -> None:
    if campaign.status != "running":
        return
    campaign.status = "paused"
    campaign.status_reason = reason
    campaign.updated_at = utcnow()
    await webhook_events.emit_campaign(session, campaign, "campaign.paused")
