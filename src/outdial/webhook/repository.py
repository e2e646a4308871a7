"""Webhook rows: endpoints, the outbox, and the named statements of the delivery queue.

The queue statements (`claim_due`, `finish`) are the concurrency-critical ones: a delivery
is claimed by moving its due time to the end of a lease and taking a lease token, in one
statement that skips rows another worker has locked (PostgreSQL); its result is recorded
only while the token is still the claimer's. A claimer that dies leaves a delivery that is
due again when the lease ends, with its event unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    ScalarSelect,
    Select,
    Table,
    bindparam,
    delete,
    event,
    exists,
    func,
    insert,
    literal_column,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction

from outdial.database import PlainTransaction, run
from outdial.ids import new_id
from outdial.models import (
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
    utcnow,
)

endpoints = cast(Table, WebhookEndpoint.__table__)
events = cast(Table, WebhookEvent.__table__)
deliveries = cast(Table, WebhookDelivery.__table__)
attempts = cast(Table, WebhookAttempt.__table__)
INTERRUPTED = "interrupted: the worker stopped before the endpoint answered"
# Written inline, not bound: a prepared statement's generic plan can then still prove the
# partial index's predicate (status = 'pending').
PENDING: ColumnElement[str] = literal_column("'pending'")


def no_endpoints(user_id: Any) -> ColumnElement[bool]:
    """True where the account (`user_id`, a column of the statement) has no endpoint at all:
    a write that would emit an event can then skip the event, in the same statement."""
    return ~exists().where(endpoints.c.user_id == user_id)


# `FOR KEY SHARE` (PostgreSQL; nothing on SQLite, one writer at a time): an endpoint being
# deleted as an event is written waits for the event's transaction, and its cascade takes
# the new deliveries with it; read without it, the deliveries' insert met the deleted row's
# foreign key and the change that emitted the event (a pause, a callback) failed.
def _endpoints_of(user_id: Any) -> Select[Any]:
    return (
        select(endpoints.c.id, endpoints.c.events)
        .where(endpoints.c.user_id == user_id)
        .with_for_update(key_share=True)
    )


_ENDPOINTS = _endpoints_of(bindparam("user_id"))
ENDPOINTS_READ = "webhook_endpoints"  # session.info: each account's endpoints, this transaction


async def subscribers(
    session: AsyncSession, user_id: str | ScalarSelect[Any], type: str
) -> list[str]:
    """Ids of the account's endpoints whose filter lets `type` through.

    `user_id` may be a scalar subquery (the owner of a call, say): one round trip either way.
    Given as a string, the account's endpoints are read once per transaction (a call's end
    emits two events), and forgotten when the transaction ends.
    """
    if isinstance(user_id, str):
        rows = remembered_endpoints(session, user_id)
        if rows is None:
            rows = list((await run(session, _ENDPOINTS, {"user_id": user_id})).all())
            remember_endpoints(session, user_id, rows)
    else:
        rows = (await session.execute(_endpoints_of(user_id))).all()
    return [row.id for row in rows if row.events is None or type in row.events]


def remembered_endpoints(
    session: AsyncSession | PlainTransaction, user_id: str
) -> list[Any] | None:
    """The account's endpoints as this transaction has read or learned them (None: not yet)."""
    read: dict[str, list[Any]] = session.info.get(ENDPOINTS_READ, {})
    return read.get(user_id)


def remember_endpoints(
    session: AsyncSession | PlainTransaction, user_id: str, rows: list[Any]
) -> None:
    """What `subscribers` would read of the account's endpoints, learned by another statement
    of the transaction (no endpoint at all: `[]`)."""
    session.info.setdefault(ENDPOINTS_READ, {})[user_id] = rows


@event.listens_for(Session, "after_transaction_end")
def _forget_endpoints(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        session.info.pop(ENDPOINTS_READ, None)


async def write_event(
    session: AsyncSession,
    user_id: str,
    type: str,
    data: dict[str, Any],
    endpoint_ids: Sequence[str],
    *,
    event_id: str | None = None,
    due: datetime | None = None,
) -> str:
    """The event and one delivery per endpoint, due at once (or at `due`); the event's id."""
    ids = [event_id] if event_id is not None else None
    return (await write_events(session, user_id, type, [data], endpoint_ids, ids, due))[0]


async def write_events(
    session: AsyncSession,
    user_id: str,
    type: str,
    datas: Sequence[dict[str, Any]],
    endpoint_ids: Sequence[str],
    event_ids: Sequence[str] | None = None,
    due: datetime | None = None,
) -> list[str]:
    """Events of one type (one per `datas` item), each due for every endpoint: two INSERTs."""
    now = utcnow()
    event_ids = list(event_ids) if event_ids is not None else [new_id("evt") for _ in datas]
    await session.execute(
        insert(events),
        [
            {"id": event_id, "user_id": user_id, "type": type, "data": data, "created_at": now}
            for event_id, data in zip(event_ids, datas, strict=True)
        ],
    )
    await session.execute(
        insert(deliveries),
        [
            {
                "id": new_id("whd"),
                "event_id": event_id,
                "endpoint_id": endpoint_id,
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": due or now,
                "created_at": now,
                "updated_at": now,
            }
            for event_id in event_ids
            for endpoint_id in endpoint_ids
        ],
    )
    return event_ids


async def replace_data(
    session: AsyncSession, event_id: str, data: dict[str, Any], now: datetime
) -> None:
    """Rewrite an event none of whose deliveries has been tried yet, and make its waiting
    deliveries due now (an event once sent keeps what it said)."""
    tried = exists().where(deliveries.c.event_id == event_id, deliveries.c.attempts > 0)
    changed = await session.execute(
        update(events).where(events.c.id == event_id, ~tried).values(data=data)
    )
    if changed.rowcount:  # type: ignore[attr-defined]
        await session.execute(
            update(deliveries)
            .where(
                deliveries.c.event_id == event_id,
                deliveries.c.status == "pending",
                deliveries.c.attempts == 0,
                deliveries.c.next_attempt_at > now,
            )
            .values(next_attempt_at=now)
        )


def endpoints_of(user_id: str) -> Select[Any]:
    return select(WebhookEndpoint).where(WebhookEndpoint.user_id == user_id)


async def count_endpoints(session: AsyncSession, user_id: str) -> int:
    query = select(func.count()).select_from(endpoints).where(endpoints.c.user_id == user_id)
    return int(await session.scalar(query) or 0)


def deliveries_of(endpoint_id: str, status: str | None) -> Select[WebhookDelivery, WebhookEvent]:
    query = select(WebhookDelivery, WebhookEvent).join(
        WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id
    )
    query = query.where(WebhookDelivery.endpoint_id == endpoint_id)
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    return query


async def count_deliveries(session: AsyncSession, endpoint_id: str, status: str | None) -> int:
    query = (
        select(func.count()).select_from(deliveries).where(deliveries.c.endpoint_id == endpoint_id)
    )
    if status is not None:
        query = query.where(deliveries.c.status == status)
    return int(await session.scalar(query) or 0)


async def attempts_of(
    session: AsyncSession, delivery_ids: Sequence[str]
) -> dict[str, list[WebhookAttempt]]:
    found: dict[str, list[WebhookAttempt]] = {delivery_id: [] for delivery_id in delivery_ids}
    if not delivery_ids:
        return found
    rows = await session.scalars(
        select(WebhookAttempt)
        .where(WebhookAttempt.delivery_id.in_(delivery_ids))
        .order_by(WebhookAttempt.delivery_id, WebhookAttempt.attempt)
    )
    for row in rows:
        found[row.delivery_id].append(row)
    return found


@dataclass(frozen=True)
class Claimed:
    """A delivery this worker now holds: what to send, where, and with which secret."""

    delivery_id: str
    attempt: int
    event_id: str
    type: str
    created_at: datetime
    data: dict[str, Any]
    url: str
    sealed_secret: bytes


async def any_due(session: AsyncSession, now: datetime) -> bool:
    """A cheap read (the partial due index) before taking a write lock to claim."""
    due = select(deliveries.c.id).where(
        deliveries.c.status == PENDING, deliveries.c.next_attempt_at <= now
    )
    return bool(await session.scalar(select(exists(due))))


async def claim_due(
    session: AsyncSession, now: datetime, lease_until: datetime, token: str, limit: int
) -> list[Claimed]:
    """CLAIM: take up to `limit` due deliveries, oldest due first, for this worker.

    Due means pending with `next_attempt_at <= now`; that includes a delivery whose lease
    ran out while its worker was gone. The claim spends an attempt number, moves
    `next_attempt_at` to `lease_until` (so nobody else takes it meanwhile) and sets the lease
    token. Rows locked by a concurrent claim are skipped (`SKIP LOCKED`; SQLite's single
    writer needs no lock). The attempt is logged at once, and an earlier attempt of the
    same delivery that never got a result is marked interrupted.
    """
    due = (
        select(deliveries.c.id)
        .where(deliveries.c.status == PENDING, deliveries.c.next_attempt_at <= now)
        .order_by(deliveries.c.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    taken = (
        await session.execute(
            update(deliveries)
            .where(deliveries.c.id.in_(due.scalar_subquery()))
            .values(
                attempts=deliveries.c.attempts + 1,
                next_attempt_at=lease_until,
                lease_token=token,
                updated_at=now,
            )
            .returning(deliveries.c.id, deliveries.c.attempts)
        )
    ).all()
    if not taken:
        return []
    ids = [row.id for row in taken]
    await session.execute(
        update(attempts)
        .where(attempts.c.delivery_id.in_(ids), attempts.c.finished_at.is_(None))
        .values(finished_at=now, error=INTERRUPTED)
    )
    await session.execute(
        insert(attempts),
        [{"delivery_id": row.id, "attempt": row.attempts, "started_at": now} for row in taken],
    )
    return await _targets(session, {row.id: row.attempts for row in taken})


async def _targets(session: AsyncSession, numbers: dict[str, int]) -> list[Claimed]:
    rows = await session.execute(
        select(
            deliveries.c.id,
            events.c.id.label("event_id"),
            events.c.type,
            events.c.created_at,
            events.c.data,
            endpoints.c.url,
            endpoints.c.secret,
        )
        .join(events, events.c.id == deliveries.c.event_id)
        .join(endpoints, endpoints.c.id == deliveries.c.endpoint_id)
        .where(deliveries.c.id.in_(list(numbers)))
    )
    return [
        Claimed(
            delivery_id=row.id,
            attempt=numbers[row.id],
            event_id=row.event_id,
            type=row.type,
            created_at=row.created_at,
            data=row.data,
            url=row.url,
            sealed_secret=row.secret,
        )
        for row in rows
    ]


@dataclass(frozen=True)
class Result:
    """What one POST got: a status code, or an error, and how long it took."""

    status_code: int | None
    error: str | None
    response_body: str | None
    duration_ms: int

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


async def finish(
    session: AsyncSession,
    claimed: Claimed,
    token: str,
    result: Result,
    now: datetime,
    retry_at: datetime | None,
) -> bool:
    """FINISH: log the attempt's result, then settle the delivery if this worker still holds it.

    Success ends the delivery; a failure makes it due at `retry_at`, or failed for good
    when `retry_at` is None. False when the lease was lost (another worker took the
    delivery after the lease ran out): only the log changes then.
    """
    error = _storable(result.error)
    await session.execute(
        update(attempts)
        .where(attempts.c.delivery_id == claimed.delivery_id, attempts.c.attempt == claimed.attempt)
        .values(
            finished_at=now,
            duration_ms=result.duration_ms,
            status_code=result.status_code,
            error=error,
            response_body=_storable(result.response_body),
        )
    )
    values: dict[str, Any] = {
        "lease_token": None,
        "updated_at": now,
        "last_status_code": result.status_code,
        "last_error": error,
    }
    if result.succeeded:
        values |= {"status": "succeeded", "next_attempt_at": None, "delivered_at": now}
    elif retry_at is None:
        values |= {"status": "failed", "next_attempt_at": None}
    else:
        values["next_attempt_at"] = retry_at
    settled = await session.execute(
        update(deliveries)
        .where(deliveries.c.id == claimed.delivery_id, deliveries.c.lease_token == token)
        .values(**values)
    )
    return bool(settled.rowcount)  # type: ignore[attr-defined]


def _storable(text: str | None) -> str | None:
    """Text an endpoint sent (or an error quoting it) as PostgreSQL stores text: without NUL
    characters, which it refuses (the result unrecorded, the event was sent again forever)."""
    return text.replace("\x00", "\ufffd") if text else text


async def purge_finished(session: AsyncSession, before: datetime) -> int:
    """Delete events older than `before` none of whose deliveries is still pending (their
    deliveries and attempt logs go with them); how many events."""
    pending = select(deliveries.c.id).where(
        deliveries.c.event_id == events.c.id, deliveries.c.status == "pending"
    )
    result = await session.execute(
        delete(events).where(events.c.created_at < before, ~exists(pending))
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
