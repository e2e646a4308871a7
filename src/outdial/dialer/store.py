"""How an attempt's progress changes the database: the call, its recipient, and the counters.

Everything here is a handful of Core statements on the columns it needs: this is the path
every provider callback takes, so it loads no ORM objects, and its statements are built once
with bind parameters (`database.run`).

Lock order, everywhere: a call row, then its campaign row, then recipient rows, then the
counter rows in name order (`add_counts` sorts them). Claims and lifecycle changes lock no
existing call. Keeping one order means concurrent claims, callbacks and lifecycle changes
can wait for each other but never deadlock.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, case, exists, func, select, true, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from outdial.campaign import repository as campaign_repository
from outdial.campaign.state import RECIPIENT_ACTIVE, RECIPIENT_WAITING, WAITING_AT_THE_END
from outdial.database import (
    NeedsSession,
    PlainTransaction,
    among,
    dialect_insert,
    dialect_of,
    plain_transaction,
    read_alone,
    run,
    write_alone,
    write_alone_first,
    write_transaction,
)
from outdial.dialer.rules import Decision, after_attempt, attempt_outcome
from outdial.dialer.wakeup import CHANNEL
from outdial.models import Call, CallEvent, Campaign, CampaignCount, CampaignRecipient, utcnow
from outdial.models.call_event import MEDIA_CLAIM_KEY
from outdial.telephony.base import (
    FINAL_STATES,
    PROVIDER_REFUSED,
    CallState,
    Verdict,
    moves_forward,
)
from outdial.telephony.base import CallEvent as Event
from outdial.webhook import events as webhook_events
from outdial.webhook import repository as webhook_repository

# Core tables, not ORM entities: statements on them skip the ORM's per-statement work.
calls = cast(Table, Call.__table__)
campaigns = cast(Table, Campaign.__table__)
recipients = cast(Table, CampaignRecipient.__table__)
counters = cast(Table, CampaignCount.__table__)
events = cast(Table, CallEvent.__table__)

# What the writes of an event run in: a session's transaction, or on PostgreSQL a plain one
# (`apply_alone`).
Transaction = AsyncSession | PlainTransaction

ENDED_REASONS = {
    "completed": "completed",
    "voicemail": "voicemail",
    "no_answer": "no_answer",
    "busy": "busy",
    "failed": "failed",
    "cancelled": "cancelled",
}


@dataclass(frozen=True)
class CallRow:
    """The columns of a call that its progress depends on, read under the row's lock."""

    id: str
    status: str
    answered_by: str | None
    answered_at: datetime | None
    provider_call_sid: str | None
    campaign_id: str | None
    recipient_id: int | None
    dial_started_at: datetime | None
    lease_expires_at: datetime | None
    talk_ended_reason: str | None = None
    media_claimed: bool = False  # a media stream connected: the call talked to its assistant
    conversation_stored: bool = False  # the voice runtime has stored the conversation
    user_id: str | None = None
    started_at: datetime | None = None  # the dialer recorded that the provider took it


_CALL_ROW = (
    calls.c.id,
    calls.c.status,
    calls.c.answered_by,
    calls.c.answered_at,
    calls.c.provider_call_sid,
    calls.c.campaign_id,
    calls.c.recipient_id,
    calls.c.dial_started_at,
    calls.c.lease_expires_at,
    calls.c.talk_ended_reason,
    exists()
    .where(events.c.call_id == calls.c.id, events.c.dedupe_key == MEDIA_CLAIM_KEY)
    .correlate(calls)  # (in a RETURNING clause too)
    .label("media_claimed"),
    # The voice runtime writes latency_metrics with every conversation it stores (an error
    # too): voice/service.record and record_failure.
    calls.c.latency_metrics.is_not(None).label("conversation_stored"),
    calls.c.user_id,
    calls.c.started_at,
)


def _call_locked(call_id: Any) -> Any:
    return select(*_CALL_ROW).where(calls.c.id == call_id).with_for_update()


_LOCK_CALL = _call_locked(bindparam("call_id"))


async def lock_call(session: Transaction, call_id: str) -> CallRow | None:
    row = (await run(session, _LOCK_CALL, {"call_id": call_id})).first()
    return CallRow(**row._mapping) if row is not None else None


@dataclass(frozen=True)
class AttemptLocks:
    """The campaign (held against stop and pause) and the recipient (locked) of an attempt
    whose end is being written."""

    campaign_status: str
    campaign_ended_reason: str | None
    retry_policy: Any
    schedule_end_time: datetime | None
    recipient_status: str
    attempts: int
    last_call_id: str | None


async def lock_attempt(
    session: Transaction, campaign_id: str, recipient_id: int
) -> AttemptLocks | None:
    """One statement: the campaign `FOR SHARE` (stop and pause wait, claims and other ends do
    not), then the recipient `FOR UPDATE`. On PostgreSQL it also tells every worker that the
    campaign may dial again (`NOTIFY`, delivered at commit)."""
    row = (
        await run(
            session,
            _lock_attempt(session.get_bind().dialect.name),
            {"campaign_id": campaign_id, "recipient_id": recipient_id},
        )
    ).first()
    if row is None:
        return None
    return AttemptLocks(**{name: row._mapping[name] for name in AttemptLocks.__dataclass_fields__})


@functools.cache
def _lock_attempt(dialect: str) -> Any:
    return _attempt_lock(dialect, bindparam("campaign_id"), bindparam("recipient_id"))


def _attempt_lock(dialect: str, campaign_id: Any, recipient_id: Any, *where: Any) -> Any:
    """`lock_attempt`'s statement for the given ids (parameters, or columns of a CTE)."""
    query = select(
        campaigns.c.status.label("campaign_status"),
        campaigns.c.ended_reason.label("campaign_ended_reason"),
        campaigns.c.retry_policy,
        campaigns.c.schedule_end_time,
        recipients.c.status.label("recipient_status"),
        recipients.c.attempts,
        recipients.c.last_call_id,
    ).where(
        campaigns.c.id == campaign_id,
        recipients.c.id == recipient_id,
        recipients.c.campaign_id == campaigns.c.id,
        *where,
    )
    if dialect == "postgresql":
        query = query.add_columns(func.pg_notify(CHANNEL, campaign_id).label("notified"))
        query = query.suffix_with(f"FOR SHARE OF {campaigns.name} FOR UPDATE OF {recipients.name}")
    return query


@dataclass(frozen=True)
class Locked:
    """A call locked for an event, and whether the event was new (`fresh`). `attempt`: its
    campaign and recipient, locked with it when the event may end it (PostgreSQL). `stray`:
    the event is another provider call's (`is_stray`); it was not stored."""

    call: CallRow
    fresh: bool
    attempt: AttemptLocks | None = None
    stray: bool = False


def is_stray(call: CallRow, event: Event) -> bool:
    """Whether the event is of a provider call other than the one the call holds: a second
    placement of its dial (a dial sent again after an answer that did not say whether the
    first was placed, while the provider's list did not show it yet). Its callbacks carry
    this call's id, as the dial did; it must not move this call, and is hung up."""
    held, sid = call.provider_call_sid, event.provider_call_id
    return bool(sid and held and held not in (sid, event.request_id))


def _its_call(held: Any) -> Any:
    """SQL: the event (`_event_params`) is of the provider call `held` (a call's
    `provider_call_sid`): it names none, the call holds none yet, or they are the same."""
    sid = bindparam("e_provider_call_id", type_=calls.c.provider_call_sid.type)
    request = bindparam("e_request_id", type_=calls.c.provider_call_sid.type)
    return sid.is_(None) | held.is_(None) | (held == sid) | (held == request)


async def lock_and_record(
    session: Transaction, call_id: str, event: Event, form: dict[str, str], now: datetime
) -> Locked | None:
    """Lock the call, then store the event once (None: no such call).

    On PostgreSQL one statement, which also locks the attempt (`lock_attempt`) when the event
    would end a live call, and learns whether the account has webhook endpoints at all;
    SQLite runs the lock and the insert one after the other.
    """
    dialect = session.get_bind().dialect.name
    params = _event_params(call_id, event, form, now)
    if dialect != "postgresql":
        call = await lock_call(session, call_id)
        if call is None:
            return None
        if is_stray(call, event):
            return Locked(call, fresh=False, stray=True)
        return Locked(call, (await run(session, _new_event(dialect), params)).first() is not None)
    ending = event.state in FINAL_STATES
    row = (await run(session, _locked_event(ending), params)).first()
    if row is None:
        return None
    fields = row._mapping
    call = CallRow(**{name: fields[name] for name in CallRow.__dataclass_fields__})
    if is_stray(call, event):  # (not stored: `_locked_event` inserts only the call's own)
        return Locked(call, fresh=False, stray=True)
    if fields["unheard"] and call.user_id is not None:
        webhook_repository.remember_endpoints(session, call.user_id, [])
    elif isinstance(session, PlainTransaction):  # its events are written through the ORM
        raise NeedsSession("the account has webhook endpoints")
    attempt = None
    if ending and fields["recipient_status"] is not None:
        attempt = AttemptLocks(**{name: fields[name] for name in AttemptLocks.__dataclass_fields__})
    return Locked(call, fields["fresh"], attempt)


@functools.cache
def _locked_event(ending: bool) -> Any:
    locked = _call_locked(_event_call()).cte("locked")
    mine = exists().where(locked.c.id == _event_call(), _its_call(locked.c.provider_call_sid))
    logged = _event_insert("postgresql", mine).cte("logged")
    query = select(
        *locked.c,
        exists().where(logged.c.call_id == locked.c.id).label("fresh"),
        webhook_repository.no_endpoints(locked.c.user_id).label("unheard"),
    )
    if not ending:
        return query
    live = [state.value for state in CallState if state not in FINAL_STATES]
    attempt = _attempt_lock(
        "postgresql",
        locked.c.campaign_id,
        locked.c.recipient_id,
        among(locked.c.status, live),  # (a duplicate of an end finds the call ended)
        _its_call(locked.c.provider_call_sid),  # (another provider call's end ends nothing)
    ).cte("attempt")
    columns = [column for column in attempt.c if column.name != "notified"]
    return query.add_columns(*columns).select_from(locked.outerjoin(attempt, true()))


async def _update_call(session: Transaction, call_id: str, **values: Any) -> None:
    await _update_row(session, calls, call_id, values)


async def _update_recipient(session: Transaction, recipient_id: int, **values: Any) -> None:
    await _update_row(session, recipients, recipient_id, values)


async def _update_row(session: Transaction, table: Table, key: Any, values: dict[str, Any]) -> None:
    """Set plain values (and `updated_at`) on the row with id `key`."""
    values = {"updated_at": utcnow(), **values}
    statement = _row_update(table, tuple(sorted(values)))
    await run(session, statement, _row_params(key, values))


def _row_params(key: Any, values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    params = {f"{prefix}new_{name}": value for name, value in values.items()}
    return {f"{prefix}row_id": key, **params}


@functools.cache
def _row_update(table: Table, names: tuple[str, ...], prefix: str = "") -> Any:
    """UPDATE of `names` on the row with id `row_id` (parameter names after `prefix`)."""
    return (
        update(table)
        .where(table.c.id == bindparam(f"{prefix}row_id"))
        .values(
            {name: bindparam(f"{prefix}new_{name}", type_=table.c[name].type) for name in names}
        )
    )


@dataclass
class _EndWrites:
    """The end of a call's writes, sent as one statement (PostgreSQL): the call's and the
    recipient's updates are data-modifying CTEs of the counters' upsert. Used when the
    account has no webhook endpoint: no event then reads the rows between the writes.
    The rows are locked already (`lock_and_record`), the counters last, as always."""

    campaign_id: str
    updates: list[tuple[Table, Any, dict[str, Any]]] = field(default_factory=list)
    deltas: dict[str, int] = field(default_factory=dict)

    def update(self, table: Table, key: Any, values: dict[str, Any]) -> None:
        self.updates.append((table, key, {"updated_at": utcnow(), **values}))

    async def send(self, session: Transaction) -> int:
        """Send the writes; the campaign's recipients waiting to be dialed (`Ended`)."""
        shapes = tuple((table, tuple(sorted(values))) for table, _, values in self.updates)
        deltas = tuple(sorted((name, delta) for name, delta in self.deltas.items() if delta))
        params: dict[str, Any] = {"counted_campaign": self.campaign_id}
        for i, (_table, key, values) in enumerate(self.updates):
            params.update(_row_params(key, values, f"u{i}_"))
        row = (await run(session, _end_writes(shapes, deltas), params)).first()
        assert row is not None  # (the counters always change: see `_end_writes_for`)
        return int(row.waiting_to_dial)


@functools.cache
def _end_writes(
    shapes: tuple[tuple[Table, tuple[str, ...]], ...], deltas: tuple[tuple[str, int], ...]
) -> Any:
    updates = [
        _row_update(table, names, f"u{i}_").cte(f"u{i}") for i, (table, names) in enumerate(shapes)
    ]
    # (not named after a column: the updates would take it for a value to set)
    campaign_id = bindparam("counted_campaign", type_=counters.c.campaign_id.type)
    campaign = select(campaign_id.label("campaign_id"))
    counted = campaign_repository.counts_upsert_from(campaign.subquery("campaign"), dict(deltas))
    waiting = (
        select(func.coalesce(func.sum(counters.c.value), 0))
        .where(counters.c.campaign_id == campaign_id, among(counters.c.name, RECIPIENT_WAITING))
        .scalar_subquery()
    )
    return counted.add_cte(*updates).returning(waiting.label("waiting_to_dial"))


def _end_writes_for(
    session: Transaction, call: CallRow, attempt: AttemptLocks | None
) -> _EndWrites | None:
    """One statement for the end's writes when nothing needs to read between them. (With
    its attempt locked, the end settles a recipient, so the counters always change.)"""
    if session.get_bind().dialect.name != "postgresql":
        return None
    if attempt is None or call.campaign_id is None or call.user_id is None:
        return None
    if webhook_repository.remembered_endpoints(session, call.user_id) != []:
        return None
    return _EndWrites(call.campaign_id)


@dataclass(frozen=True)
class Applied:
    """What one provider event did: the call as it is now, and whether the attempt ended.

    `fresh` is False for an event seen before (a duplicate delivery): it changed nothing.
    """

    call: CallRow
    ended: bool
    fresh: bool = True
    stray: bool = False  # another provider call's event (`is_stray`): it changed nothing
    # Recipients of the campaign waiting to be dialed (pending or retry) as the end's
    # statement saw them; None when not known (see `Ended`).
    waiting_to_dial: int | None = None


async def apply_event(
    session: Transaction, call_id: str, event: Event, form: dict[str, str]
) -> Applied | None:
    """Record the event and move the call forward by it (None: no such call).

    The event is stored once under its (call, key); a duplicate, or an event older than the
    call's state, is recorded or dropped and changes nothing.
    """
    now = utcnow()
    locked = await lock_and_record(session, call_id, event, form, now)
    if locked is None:
        return None
    call = locked.call
    if locked.stray:
        return Applied(call, ended=False, fresh=False, stray=True)
    if not locked.fresh:
        return Applied(call, ended=False, fresh=False)
    changes: dict[str, Any] = {"last_event_at": now}
    if event.provider_call_id and not call.provider_call_sid:
        changes["provider_call_sid"] = event.provider_call_id
    if event.verdict is not None and call.answered_by in (None, Verdict.UNKNOWN):
        changes["answered_by"] = event.verdict.value
    current = _with(call, changes)
    if event.state is None or not moves_forward(call.status, event.state):
        await _update_call(session, call_id, **changes)
        return Applied(current, ended=False)
    if event.state in FINAL_STATES:
        ended = await finish_call(
            session,
            current,
            event.state,
            now,
            reason=event.reason,
            duration=event.duration_seconds,
            changes=changes,
            attempt=locked.attempt,
            by_provider=True,
        )
        waiting = ended.waiting_to_dial if ended is not None else None
        final = _with(current, {"status": event.state.value})
        return Applied(final, ended=True, waiting_to_dial=waiting)
    changes["status"] = event.state.value
    if event.state is CallState.IN_PROGRESS and call.answered_at is None:
        changes["answered_at"] = now
    await _update_call(session, call_id, **changes)
    if event.state is CallState.IN_PROGRESS:
        await _recipient_answered(session, call)
    return Applied(_with(current, changes), ended=False)


async def apply_alone(
    sessionmaker: async_sessionmaker[AsyncSession], call_id: str, event: Event, form: dict[str, str]
) -> Applied | None:
    """`apply_event` in a write transaction of its own.

    On PostgreSQL a plain transaction (`database.PlainTransaction`): the statements are the
    same, without a session's CPU around them. An account with webhook endpoints has its
    events written through the ORM: that transaction is rolled back and the work done again
    in a session, as it is on SQLite.
    """
    if dialect_of(sessionmaker) == "postgresql":
        try:
            async with plain_transaction(sessionmaker) as transaction:
                return await apply_event(transaction, call_id, event, form)
        except NeedsSession:
            pass
    async with write_transaction(sessionmaker) as session:
        return await apply_event(session, call_id, event, form)


async def record_answer(
    sessionmaker: async_sessionmaker[AsyncSession], call_id: str, event: Event, form: dict[str, str]
) -> Applied | None:
    """The call is answered: `apply_event`'s work for its most common event in one
    statement (PostgreSQL), None with nothing written when it does not apply.

    Applies when the event is new and moves the call from a ringing state to `in_progress`:
    the call row is locked, the event stored, the call and its recipient moved, and the
    counters changed, in `apply_event`'s lock order (a data-modifying CTE each of whose
    steps feeds the next). Anything else (a duplicate, another provider call's event, a call
    already answered or ended, SQLite) is left to `apply_event`.
    """
    if event.state is not CallState.IN_PROGRESS:
        return None
    if dialect_of(sessionmaker) != "postgresql":
        return None
    params = _event_params(call_id, event, form, utcnow())
    params["e_verdict"] = event.verdict.value if event.verdict is not None else None
    row = await write_alone_first(sessionmaker, _answer(), params)
    return Applied(CallRow(**row._mapping), ended=False) if row is not None else None


@functools.cache
def _answer() -> Any:
    ringing = [state.value for state in CallState if moves_forward(state, CallState.IN_PROGRESS)]
    locked = (
        select(calls.c.id)
        .where(
            calls.c.id == _event_call(),
            among(calls.c.status, ringing),
            _its_call(calls.c.provider_call_sid),
        )
        .with_for_update()
        .cte("locked")
    )
    logged = _event_insert("postgresql", exists().where(locked.c.id == _event_call()))
    logged = logged.cte("logged")
    now = bindparam("e_received_at", type_=calls.c.answered_at.type)
    verdict = bindparam("e_verdict", type_=calls.c.answered_by.type)
    undecided = calls.c.answered_by.is_(None) | (calls.c.answered_by == Verdict.UNKNOWN.value)
    values = {
        **_heard(),
        "status": CallState.IN_PROGRESS.value,
        "answered_at": func.coalesce(calls.c.answered_at, now),
        "answered_by": case((undecided & verdict.is_not(None), verdict), else_=calls.c.answered_by),
    }
    moved = (
        update(calls)
        .where(calls.c.id == logged.c.call_id)
        .values(values)
        .returning(*_CALL_ROW)
        .cte("moved")
    )
    answered = (
        update(recipients)
        .where(
            recipients.c.id == moved.c.recipient_id,
            recipients.c.status == "dialing",
            recipients.c.last_call_id == moved.c.id,
        )
        .values(status="in_progress", updated_at=now)
        .returning(recipients.c.campaign_id)
        .cte("answered")
    )
    counted = campaign_repository.counts_upsert_from(answered, {"dialing": -1, "in_progress": 1})
    return select(moved).add_cte(counted.cte("counted"))


PROGRESS = frozenset({CallState.QUEUED, CallState.INITIATED, CallState.RINGING})


def is_progress(event: Event) -> bool:
    """Events that can only move the call's own status (never its recipient or counters)."""
    return event.state in PROGRESS and event.verdict is None


async def record_progress(
    sessionmaker: async_sessionmaker[AsyncSession], call_id: str, event: Event, form: dict[str, str]
) -> bool:
    """Record a progress event and move the call forward by it (on PostgreSQL one statement,
    no transaction around it): True when done. False, with nothing written, for a
    duplicate, another provider call's event (`is_stray`) or no such call: `apply_event`
    tells which.

    The status only advances from an earlier live status (the condition is in the UPDATE, so
    concurrent events cannot move it back). On PostgreSQL this is one statement and one round
    trip: the event insert is a data-modifying CTE the update joins, so a duplicate changes
    nothing. SQLite runs the same two steps in one write transaction.
    """
    assert event.state is not None
    params = _event_params(call_id, event, form, utcnow())
    dialect = dialect_of(sessionmaker)
    if dialect == "postgresql":
        return await write_alone(sessionmaker, _progress(dialect, event.state), params) == 1
    async with write_transaction(sessionmaker) as session:
        if (await run(session, _progress_event(dialect), params)).first() is None:
            return False
        await run(session, _progress_update(event.state), params)
        return True


@functools.cache
def _progress_event(dialect: str) -> Any:
    """The insert of a progress event, done only for its own call's (`_its_call`; SQLite)."""
    mine = exists().where(calls.c.id == _event_call(), _its_call(calls.c.provider_call_sid))
    return _event_insert(dialect, mine)


@functools.cache
def _progress(dialect: str, state: CallState) -> Any:
    """`record_progress` in one statement (PostgreSQL). The call's row is locked first (the
    update would lock it anyway), so the provider call it holds is read as it is now: an
    event that another provider call's has just beaten to it is not stored."""
    locked = (
        select(calls.c.id)
        .where(calls.c.id == _event_call(), _its_call(calls.c.provider_call_sid))
        .with_for_update()
        .cte("locked")
    )
    logged = _event_insert(dialect, exists().where(locked.c.id == _event_call())).cte("logged")
    statement = update(calls).where(calls.c.id == logged.c.call_id)
    return statement.values(_progress_values(state)).add_cte(logged)


@functools.cache
def _progress_update(state: CallState) -> Any:
    """The call's side of `record_progress` alone (SQLite)."""
    statement = update(calls).where(calls.c.id == _event_call())
    return statement.values(_progress_values(state))


def _progress_values(state: CallState) -> dict[str, Any]:
    earlier = [each.value for each in CallState if moves_forward(each, state)]
    values = _heard()
    values["status"] = case((among(calls.c.status, earlier), state.value), else_=calls.c.status)
    return values


async def record_repeat(
    sessionmaker: async_sessionmaker[AsyncSession], call_id: str, event: Event, form: dict[str, str]
) -> bool:
    """Record an event that tells nothing new (the call is already in its state, and has a
    verdict if it brings one) in one statement, without locking the call: True when done.

    PostgreSQL only: the event is inserted only while the call is so, and the call's
    `last_event_at` moves with it (a data-modifying CTE). False, with nothing written, for
    anything else (a duplicate, a call elsewhere, another provider call's event, SQLite):
    `apply_event` then decides.
    Only `in_progress` is tried: Twilio's `in-progress` status callback after its answer
    request is the common case; a final state is almost never told twice.
    """
    if event.state is not CallState.IN_PROGRESS:  # the one state that is commonly told twice
        return False
    if dialect_of(sessionmaker) != "postgresql":
        return False
    params = _event_params(call_id, event, form, utcnow())
    return await write_alone(sessionmaker, _repeat(event.verdict is not None), params) == 1


@functools.cache
def _repeat(with_verdict: bool) -> Any:
    known = [
        calls.c.id == _event_call(),
        calls.c.status == CallState.IN_PROGRESS.value,
        _its_call(calls.c.provider_call_sid),
    ]
    if with_verdict:  # (NULL is not != 'unknown' either)
        known.append(calls.c.answered_by != Verdict.UNKNOWN.value)
    logged = _event_insert("postgresql", exists().where(*known)).cte("logged")
    statement = update(calls).where(calls.c.id == logged.c.call_id).values(_heard())
    return statement.add_cte(logged)


def _heard() -> dict[str, Any]:
    """What any recorded event changes on its call (parameters from `_event_params`): when
    it was last heard of, and the provider's id if it was not known yet."""
    now = bindparam("e_received_at", type_=calls.c.last_event_at.type)
    sid = bindparam("e_provider_call_id", type_=calls.c.provider_call_sid.type)
    return {
        "last_event_at": now,
        "updated_at": now,
        "provider_call_sid": func.coalesce(calls.c.provider_call_sid, sid),
    }


def _with(call: CallRow, changes: dict[str, Any]) -> CallRow:
    fields = {k: v for k, v in changes.items() if k in CallRow.__dataclass_fields__}
    return CallRow(**{**call.__dict__, **fields})


def _event_params(
    call_id: str, event: Event, form: dict[str, str], now: datetime
) -> dict[str, Any]:
    return {
        "e_call_id": call_id,
        "e_dedupe_key": event.dedupe_key[:80],
        "e_payload": form,
        "e_received_at": now,
        "e_provider_call_id": event.provider_call_id,
        "e_request_id": event.request_id,
    }


def _event_call() -> Any:
    return bindparam("e_call_id", type_=calls.c.id.type)


@functools.cache
def _new_event(dialect: str) -> Any:
    return _event_insert(dialect)


def _event_insert(dialect: str, only_if: Any = None) -> Any:
    """INSERT of the event in `_event_params` that does nothing for a duplicate (or while
    `only_if`, a condition, is false) and returns the new row's call."""
    names = ["call_id", "dedupe_key", "payload", "received_at"]
    row = {name: bindparam(f"e_{name}", type_=events.c[name].type) for name in names}
    insert = dialect_insert(dialect, events)
    if only_if is None:
        insert = insert.values(row)
    else:
        insert = insert.from_select(names, select(*row.values()).where(only_if))
    return insert.on_conflict_do_nothing(index_elements=["call_id", "dedupe_key"]).returning(
        events.c.call_id
    )


_ANSWERED = (
    update(recipients)
    .where(
        recipients.c.id == bindparam("recipient_id"),
        recipients.c.status == "dialing",
        recipients.c.last_call_id == bindparam("call_id"),
    )
    .values(status="in_progress", updated_at=bindparam("now", type_=recipients.c.updated_at.type))
)


async def _recipient_answered(session: Transaction, call: CallRow) -> None:
    """The call is live: its recipient moves from dialing to in_progress."""
    if call.recipient_id is None or call.campaign_id is None:
        return
    params = {"recipient_id": call.recipient_id, "call_id": call.id, "now": utcnow()}
    moved = await run(session, _ANSWERED, params)
    if moved.rowcount == 1:  # type: ignore[attr-defined]
        await campaign_repository.add_counts(
            session, call.campaign_id, {"dialing": -1, "in_progress": 1}
        )


@dataclass(frozen=True)
class Ended:
    """A call `finish_call` ended. `waiting_to_dial`: its campaign's recipients waiting to be
    dialed (pending or retry), as the end's one statement saw them before its own changes;
    known only when the end was that one statement (`_EndWrites`), else None.

    While any wait, this end cannot have completed the campaign, whatever other ends commit
    meanwhile: they settle dialed recipients only, and a waiting one becomes final only by a
    claim or an expiry, which check for completion themselves, or by its own call's end.
    So the read whether the campaign is complete (`nothing_left`) is needed only when none
    waited."""

    waiting_to_dial: int | None = None


def _events_session(transaction: Transaction) -> AsyncSession | None:
    """The session to write the events of `webhook.events` in; None for a plain transaction,
    which runs only for an account without webhook endpoints (`lock_and_record` refuses the
    others): its events would go nowhere."""
    return None if isinstance(transaction, PlainTransaction) else transaction


def talked(state: CallState | str, answered_by: str | None) -> bool:
    """A call that ended as a conversation: completed, with a person (or no verdict) on the
    line. Its ended_reason is the conversation's (customer_hung_up, transferred, …) rather
    than the provider's generic end."""
    status = state.value if isinstance(state, CallState) else state
    return status == CallState.COMPLETED.value and answered_by != Verdict.MACHINE.value


async def finish_call(
    session: Transaction,
    call: CallRow,
    state: CallState,
    now: datetime,
    *,
    reason: str | None = None,
    duration: int | None = None,
    changes: dict[str, Any] | None = None,
    attempt: AttemptLocks | None = None,
    by_provider: bool = False,
) -> Ended | None:
    """End a call (locked by the caller) and decide its recipient's next step.

    `attempt`: its campaign and recipient, if the caller has locked them already.
    `by_provider`: the provider's callback ends it, so the provider took the call; if the
    dialer has not recorded that yet (a call shorter than the dial's bookkeeping), its
    `call.started` is written here, before `call.ended`, and `Sender._dial_sent` finds
    it ended and writes none.
    Returns None when the call had already ended: finishing is idempotent.
    """
    if call.status in FINAL_STATES:
        return None
    values = dict(changes or {})
    values.update(status=state.value, ended_at=now, lease_owner=None, lease_expires_at=None)
    if duration is not None:
        values["duration_seconds"] = duration
    elif call.answered_at is not None:
        values["duration_seconds"] = max(0, round((now - call.answered_at).total_seconds()))
    # Answered: its answer was recorded, or the provider bills a duration (Twilio's
    # `completed` can overtake its own `in-progress`; the reaper learns only the end).
    answered = call.answered_at is not None or bool(duration)
    outcome = attempt_outcome(state, call.answered_by, answered)
    values["ended_reason"] = (reason or ENDED_REASONS[outcome])[:40]
    if call.talk_ended_reason and talked(state, call.answered_by):
        # The conversation ended first and said why (voice/service.talk_ended).
        values["ended_reason"] = call.talk_ended_reason
    writes = _end_writes_for(session, call, attempt)
    if writes is not None:  # no endpoint: `call.ended` goes nowhere
        writes.update(calls, call.id, values)
    else:
        told = _events_session(session)
        if told is not None and by_provider and call.started_at is None:
            # The event reads the call's row: what the callback says of the call (its
            # provider id) is written first.
            if changes:
                await _update_call(session, call.id, **changes)
            await webhook_events.emit_call(told, call.id, "call.started", user_id=call.user_id)
        await _update_call(session, call.id, **values)
        if told is not None:
            pending = bool(call.media_claimed and not call.conversation_stored)
            await webhook_events.emit_call(
                told, call.id, "call.ended", conversation_pending=pending, user_id=call.user_id
            )
    if call.recipient_id is not None and call.campaign_id is not None:
        why = values["ended_reason"]
        await _settle_recipient(session, call, outcome, why, now, attempt, writes)
    if writes is not None:
        return Ended(await writes.send(session))
    return Ended()


async def _settle_recipient(
    session: Transaction,
    call: CallRow,
    outcome: str,
    reason: str | None,
    now: datetime,
    attempt: AttemptLocks | None = None,
    writes: _EndWrites | None = None,
) -> None:
    """The recipient's next step after its call ended with `outcome` (and the call's
    ended `reason`): final, or a retry by the campaign's policy."""
    assert call.campaign_id is not None and call.recipient_id is not None
    locked = attempt or await lock_attempt(session, call.campaign_id, call.recipient_id)
    deltas = {"calls_active": -1}
    if (
        locked is not None
        and locked.last_call_id == call.id
        and locked.recipient_status in ("dialing", "in_progress")
    ):
        if reason == PROVIDER_REFUSED and _never_rang(call, locked):
            values = _given_back(locked, now)
        else:
            decision = (
                Decision(outcome)
                if locked.campaign_status == "completed"
                else after_attempt(
                    locked.retry_policy,
                    outcome,
                    locked.attempts,
                    now,
                    locked.schedule_end_time,
                    reason,
                )
            )
            values = {
                "status": decision.status,
                "last_outcome": outcome,
                "next_attempt_at": decision.next_attempt_at,
                "status_reason": (
                    f"retry {locked.attempts + 1} after {outcome}"
                    if decision.next_attempt_at
                    else None
                ),
            }
        status = values["status"]
        deltas[locked.recipient_status] = deltas.get(locked.recipient_status, 0) - 1
        deltas[status] = deltas.get(status, 0) + 1
        if writes is not None:  # no endpoint: `recipient.final` goes nowhere
            writes.update(recipients, call.recipient_id, values)
        else:
            await _update_recipient(session, call.recipient_id, **values)
            told = _events_session(session)
            if told is not None and status not in RECIPIENT_ACTIVE:
                await webhook_events.emit_recipient_final(told, call.recipient_id, call.user_id)
    if writes is not None:
        writes.deltas = deltas
    else:
        await campaign_repository.add_counts(session, call.campaign_id, deltas)


# A recipient whose call the provider refused for the account's sake waits this long before
# it may be claimed again: the campaign is paused meanwhile (`sender.pause_for_account`).
REFUSED_WAIT = timedelta(seconds=5)


def _as_the_end_left_them(locked: AttemptLocks) -> tuple[str, str]:
    """The final status and reason the campaign's end (a stop, its schedule) gave every
    waiting recipient: what a recipient it meets later, never called, ends with."""
    return WAITING_AT_THE_END.get(locked.campaign_ended_reason or "", ("expired", "campaign ended"))


def _never_rang(call: CallRow, locked: AttemptLocks) -> bool:
    """Whether the call never reached the person: nobody answered while it was dialing."""
    return call.answered_at is None and locked.recipient_status == "dialing"


def _given_back(locked: AttemptLocks, now: datetime) -> dict[str, Any]:
    """The recipient's values when the provider refused its call for the account's sake
    before it rang: the attempt does not count. When the campaign has ended meanwhile (a
    stop, its schedule), it ends as that end made of every waiting recipient."""
    if locked.campaign_status == "completed":
        status, reason = _as_the_end_left_them(locked)
        return {"status": status, "next_attempt_at": None, "status_reason": reason}
    left = locked.attempts - 1
    return {
        "status": "pending" if left == 0 else "retry_scheduled",
        "attempts": left,
        "next_attempt_at": now + REFUSED_WAIT,
        "status_reason": "the provider refused the call for the account: not counted",
    }


async def release_undialed(
    session: AsyncSession,
    call: CallRow,
    now: datetime,
    reason: str,
    detail: str | None = None,
    *,
    final: str | None = None,
) -> None:
    """A claimed call that never reached the provider: the attempt is given back.

    `reason` is a short code for the call; `detail` (or the code) tells the recipient why.
    The recipient waits for its next claim, or ends with the status `final` (a pre-dial
    check that refused it: `skipped`). When the campaign ended meanwhile (its schedule, or a
    stop, which leave a dialing recipient alone), the recipient ends as that end made of
    every waiting one.
    """
    if call.status in FINAL_STATES:
        return
    await _update_call(
        session,
        call.id,
        status=CallState.CANCELED.value,
        ended_at=now,
        ended_reason=reason[:40],
        lease_owner=None,
        lease_expires_at=None,
    )
    if call.recipient_id is None or call.campaign_id is None:
        return
    locked = await lock_attempt(session, call.campaign_id, call.recipient_id)
    if final is None and locked is not None and locked.campaign_status == "completed":
        final, detail = _as_the_end_left_them(locked)
    deltas = {"calls_active": -1, "calls_placed": -1}
    if (
        locked is not None
        and locked.last_call_id == call.id
        and locked.recipient_status == "dialing"
    ):
        attempts = locked.attempts - 1
        status = final or ("pending" if attempts == 0 else "retry_scheduled")
        await _update_recipient(
            session,
            call.recipient_id,
            attempts=attempts,
            status=status,
            next_attempt_at=None if final or attempts == 0 else now,
            status_reason=(detail or reason)[:200],
        )
        deltas.update({"dialing": -1, status: 1})
        if final:
            await webhook_events.emit_recipient_final(session, call.recipient_id, call.user_id)
    await campaign_repository.add_counts(session, call.campaign_id, deltas)


_WAITING = (
    select(counters.c.name)
    .where(
        counters.c.campaign_id == bindparam("campaign_id"),
        among(counters.c.name, RECIPIENT_WAITING),
    )
    .group_by(counters.c.name)
    .having(func.sum(counters.c.value) != 0)
)


async def found_placed(
    session: Transaction, call: CallRow, provider_call_sid: str, now: datetime
) -> bool:
    """A dial whose sender died before hearing the provider, which lists its call: it goes
    on as a sent dial (`initiated`, the provider's id recorded), as `Sender._dial_sent`
    would have left it, and is asked about like any silent call from now on. Returns
    whether a hang-up was asked for it meanwhile (the caller carries it out)."""
    await _update_call(
        session,
        call.id,
        provider_call_sid=provider_call_sid,
        status=CallState.INITIATED.value,
        started_at=now,
        last_event_at=now,
        lease_owner=None,
        lease_expires_at=None,
    )
    told = _events_session(session)
    if told is not None:
        await webhook_events.emit_call(told, call.id, "call.started", user_id=call.user_id)
    asked = select(calls.c.hangup_requested).where(calls.c.id == call.id)
    return bool((await run(session, asked)).scalar())


async def nothing_left(sessionmaker: async_sessionmaker[AsyncSession], campaign_id: str) -> bool:
    """A cheap read: could the campaign be complete? (`complete_if_done` decides under lock.)"""
    return not await read_alone(sessionmaker, _WAITING, {"campaign_id": campaign_id})


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
    await webhook_events.emit_campaign(session, campaign, "campaign.completed")
    return True


async def expire_waiting(session: AsyncSession, campaign: Campaign, now: datetime) -> None:
    """Schedule over: waiting recipients expire and the campaign completes (live calls finish)."""
    deltas = await campaign_repository.end_waiting(
        session, campaign.id, *WAITING_AT_THE_END["schedule_ended"]
    )
    await campaign_repository.add_counts(session, campaign.id, deltas)
    campaign.status = "completed"
    campaign.ended_reason = "schedule_ended"
    campaign.completed_at = now
    await webhook_events.emit_campaign(session, campaign, "campaign.completed")
