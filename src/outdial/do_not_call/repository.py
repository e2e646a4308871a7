"""Do-not-call rows, and the one statement that finds the numbers a claim must not dial now."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    Executable,
    Select,
    String,
    Table,
    any_,
    bindparam,
    delete,
    exists,
    func,
    literal_column,
    or_,
    select,
    text,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession

from outdial.database import dialect_insert, run
from outdial.models import Call, DoNotCallEntry
from outdial.models.call import LIVE_CONDITION
from outdial.telephony.base import PROVIDER_REFUSED

entries = cast(Table, DoNotCallEntry.__table__)
calls = cast(Table, Call.__table__)
DAY = timedelta(hours=24)
_CHUNK = 5_000  # rows per INSERT: 5 parameters each stays under both backends' limits


async def insert(
    session: AsyncSession,
    user_id: str,
    rows: Sequence[tuple[str, str | None]],
    source: str,
    now: datetime,
    call_id: str | None = None,
) -> set[str]:
    """Add (number, reason) rows; a number already listed keeps its entry. The numbers added."""
    added: set[str] = set()
    for start in range(0, len(rows), _CHUNK):
        values = [
            {
                "user_id": user_id,
                "phone_number": number,
                "reason": reason,
                "source": source,
                "call_id": call_id,
                "created_at": now,
            }
            for number, reason in rows[start : start + _CHUNK]
        ]
        statement = (
            dialect_insert(session, entries)
            .values(values)
            .on_conflict_do_nothing(index_elements=["user_id", "phone_number"])
            .returning(entries.c.phone_number)
        )
        added.update((await session.scalars(statement)).all())
    return added


async def get(session: AsyncSession, user_id: str, number: str) -> DoNotCallEntry | None:
    return await session.get(DoNotCallEntry, (user_id, number))


async def remove(session: AsyncSession, user_id: str, number: str) -> bool:
    result = await session.execute(
        delete(entries).where(entries.c.user_id == user_id, entries.c.phone_number == number)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def listing(user_id: str) -> Select[Any]:
    return select(DoNotCallEntry).where(DoNotCallEntry.user_id == user_id)


def _counted_calls(user_id: Any, numbers: Any, since: Any) -> Any:
    """An account's calls to `numbers` (a condition on the number) since `since` that count
    against the daily cap.

    A call counts unless it never reached the provider (given back before its dial:
    `canceled` without a dial time) or the provider refused it for the account's sake
    (`provider_refused`: nobody was called). Range scan on ix_calls_user_number_created.
    """
    return (
        calls.c.user_id == user_id,
        numbers,
        calls.c.created_at > since,
        or_(calls.c.dial_started_at.is_not(None), calls.c.status != "canceled"),
        or_(calls.c.ended_reason.is_(None), calls.c.ended_reason != PROVIDER_REFUSED),
    )


def call_listed() -> ColumnElement[bool]:
    """True for a call (in a statement on `calls`) whose number is on its account's list:
    the dial gate's last look, folded into its one UPDATE."""
    return exists().where(
        entries.c.user_id == calls.c.user_id, entries.c.phone_number == calls.c.to_number
    )


async def is_listed(session: AsyncSession, user_id: str, number: str) -> bool:
    query = select(entries.c.phone_number).where(
        entries.c.user_id == user_id, entries.c.phone_number == number
    )
    return (await session.scalar(query)) is not None


def _one_of(dialect: str, column: Any) -> ColumnElement[bool]:
    """`column` is one of the `numbers` parameter: an array on PostgreSQL (one statement
    whatever their count), a list expanded at execution on SQLite."""
    if dialect == "postgresql":
        return cast(ColumnElement[bool], column == any_(bindparam("numbers", type_=ARRAY(String))))
    return column.in_(bindparam("numbers", expanding=True))


@functools.cache
def blocked_query(dialect: str, *, capped: bool, live: bool) -> Executable:
    """BLOCKED: (number, "dnc" | "daily_cap" | "live") for the numbers that must not be
    dialed now; "daily_cap" only with `capped`, "live" (a call to the number is live) only
    with `live`. Parameters: `blocked_params`.

    Each part is an index lookup: the list's primary key (user, number), the calls'
    (user, to_number, created_at) over the last 24 hours, the live calls' unique
    (user, to_number); one round trip for all. Built once per shape.
    """
    user_id = bindparam("user_id")
    parts = [
        select(entries.c.phone_number, literal_column("'dnc'")).where(
            entries.c.user_id == user_id, _one_of(dialect, entries.c.phone_number)
        )
    ]
    if capped:
        since = bindparam("since", type_=calls.c.created_at.type)
        parts.append(
            select(calls.c.to_number, literal_column("'daily_cap'"))
            .where(*_counted_calls(user_id, _one_of(dialect, calls.c.to_number), since))
            .group_by(calls.c.to_number)
            .having(func.count() >= bindparam("cap"))
        )
    if live:
        parts.append(
            select(calls.c.to_number, literal_column("'live'")).where(
                calls.c.user_id == user_id,
                _one_of(dialect, calls.c.to_number),
                text(LIVE_CONDITION),  # inline: a generic plan can still use the partial index
            )
        )
    return parts[0] if len(parts) == 1 else union_all(*parts)


def blocked_params(
    user_id: str, numbers: Sequence[str], now: datetime, daily_cap: int | None
) -> dict[str, Any]:
    return {"user_id": user_id, "numbers": list(numbers), "since": now - DAY, "cap": daily_cap}


async def blocked(
    session: AsyncSession,
    user_id: str,
    numbers: Sequence[str],
    now: datetime,
    daily_cap: int | None,
    *,
    live: bool = False,
) -> list[tuple[str, str]]:
    statement = blocked_query(session.get_bind().dialect.name, capped=bool(daily_cap), live=live)
    rows = await run(session, statement, blocked_params(user_id, numbers, now, daily_cap))
    return [(number, reason) for number, reason in rows.all()]


async def recent_call_times(
    session: AsyncSession, user_id: str, numbers: Sequence[str], now: datetime
) -> list[tuple[str, datetime]]:
    """(number, created_at) of the counted calls to `numbers` in the last 24 hours."""
    query = select(calls.c.to_number, calls.c.created_at).where(
        *_counted_calls(user_id, calls.c.to_number.in_(numbers), now - DAY)
    )
    return [(number, created) for number, created in (await session.execute(query)).all()]
