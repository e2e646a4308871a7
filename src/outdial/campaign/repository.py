"""Campaign queries: recipients in bulk, the list snapshot, and the `counts` counters."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import (
    Select,
    and_,
    case,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import TextClause

from outdial.campaign.state import COUNT_KEYS, RECIPIENT_WAITING
from outdial.database import PlainTransaction, run
from outdial.models import (
    Assistant,
    Campaign,
    CampaignCount,
    CampaignRecipient,
    PhoneNumber,
    RecipientList,
    RecipientListRow,
    utcnow,
)
from outdial.models.base import JSONType
from outdial.schemas import Page

_CHUNK = 5_000


async def init_counts(session: AsyncSession, campaign_id: str) -> None:
    await session.execute(
        insert(CampaignCount),
        [{"campaign_id": campaign_id, "name": key, "value": 0} for key in COUNT_KEYS],
    )


COUNT_SHARDS = 32  # PostgreSQL: how many rows a campaign's key may be spread over


async def add_counts(
    session: AsyncSession | PlainTransaction, campaign_id: str, deltas: Mapping[str, int]
) -> None:
    """Apply counter deltas in place (`value = value + d`): no read-modify-write race.

    One upsert whose rows are in name order, all in this connection's shard: PostgreSQL
    inserts (or, on conflict, updates and locks) the rows of a VALUES list one after
    another, so every writer locks counter rows in the same order and two writers never
    deadlock on them. A multi-row UPDATE would lock them in whatever order its plan scans
    them. Writers on other connections mostly write other shards and do not wait at all.
    """
    changed = sorted((name, delta) for name, delta in deltas.items() if delta)
    if not changed:
        return
    values: dict[str, Any] = {"campaign_id": campaign_id}
    for i, (name, delta) in enumerate(changed):
        values[f"name{i}"] = name
        values[f"value{i}"] = delta
    dialect = session.get_bind().dialect.name
    await run(session, _counts_upsert(dialect, len(changed)), values)


@functools.cache
def _counts_upsert(dialect: str, rows: int) -> TextClause:
    """The counter upsert for `rows` rows, as text: SQLAlchemy never caches the compiled form
    of a multi-row VALUES insert, and this statement runs with every change of an attempt.
    The shard is the connection's: constant through a transaction, so one transaction's
    rows keep the name order."""
    shard = f"pg_backend_pid() % {COUNT_SHARDS}" if dialect == "postgresql" else "0"
    values = ", ".join(f"(:campaign_id, :name{i}, {shard}, :value{i})" for i in range(rows))
    return text(
        f"INSERT INTO campaign_counts (campaign_id, name, shard, value) VALUES {values} "
        "ON CONFLICT (campaign_id, name, shard) "
        "DO UPDATE SET value = campaign_counts.value + excluded.value"
    )


def counts_upsert_from(source: Any, deltas: Mapping[str, int]) -> Any:
    """`add_counts` as a statement (PostgreSQL) over the campaign ids a query or a
    data-modifying CTE yields, to fold into a bigger statement: the same rows in the same
    (name) order, in this connection's shard."""
    rows = [
        select(
            source.c.campaign_id,
            literal(name),
            func.pg_backend_pid() % COUNT_SHARDS,
            literal(delta),
        )
        for name, delta in sorted(deltas.items())
        if delta
    ]
    table = CampaignCount.__table__
    upsert = pg_insert(table).from_select(
        ["campaign_id", "name", "shard", "value"], union_all(*rows)
    )
    return upsert.on_conflict_do_update(
        index_elements=["campaign_id", "name", "shard"],
        set_={"value": table.c.value + upsert.excluded.value},
    )


async def read_counts(
    session: AsyncSession, campaign_ids: Sequence[str]
) -> dict[str, dict[str, int]]:
    """Each campaign's counters: every key's shards summed (one statement for all)."""
    result: dict[str, dict[str, int]] = {cid: dict.fromkeys(COUNT_KEYS, 0) for cid in campaign_ids}
    query = (
        select(CampaignCount.campaign_id, CampaignCount.name, func.sum(CampaignCount.value))
        .where(CampaignCount.campaign_id.in_(campaign_ids))
        .group_by(CampaignCount.campaign_id, CampaignCount.name)
    )
    for campaign_id, name, value in (await session.execute(query)).all():
        result[campaign_id][name] = int(value)
    return result


async def numbers_present(
    session: AsyncSession, campaign_id: str, numbers: Iterable[str]
) -> set[str]:
    wanted = list(numbers)
    found: set[str] = set()
    for start in range(0, len(wanted), _CHUNK):
        query = select(CampaignRecipient.phone_number).where(
            CampaignRecipient.campaign_id == campaign_id,
            CampaignRecipient.phone_number.in_(wanted[start : start + _CHUNK]),
        )
        found.update((await session.scalars(query)).all())
    return found


async def insert_recipients(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    for start in range(0, len(rows), _CHUNK):
        await session.execute(insert(CampaignRecipient), rows[start : start + _CHUNK])


def _already_in_campaign(campaign_id: str) -> Any:
    return exists().where(
        CampaignRecipient.campaign_id == campaign_id,
        CampaignRecipient.phone_number == RecipientListRow.phone_number,
    )


async def snapshot_list(session: AsyncSession, campaign: Campaign, list_id: str) -> dict[str, int]:
    """Copy a list's rows into the campaign's recipients; numbers already there are skipped.

    Runs as one INSERT … SELECT, so a million-row list never passes through Python.
    Returns the counter deltas.
    """
    duplicate = _already_in_campaign(campaign.id)
    duplicates = (
        await session.scalar(
            select(func.count())
            .select_from(RecipientListRow)
            .where(RecipientListRow.list_id == list_id, duplicate)
        )
        or 0
    )
    total = (
        await session.scalar(
            select(func.count())
            .select_from(RecipientListRow)
            .where(RecipientListRow.list_id == list_id)
        )
        or 0
    )
    source = select(
        literal(campaign.id),
        RecipientListRow.position + campaign.last_position,
        RecipientListRow.phone_number,
        RecipientListRow.row_metadata,
        literal({}, JSONType),
        case((duplicate, "skipped"), else_="pending"),
        case((duplicate, "duplicate"), else_=None),
        literal(0),
        literal(utcnow(), CampaignRecipient.updated_at.type),
    ).where(RecipientListRow.list_id == list_id)
    columns = [
        "campaign_id",
        "position",
        "phone_number",
        "metadata",
        "assistant_overrides",
        "status",
        "status_reason",
        "attempts",
        "updated_at",
    ]
    await session.execute(insert(CampaignRecipient).from_select(columns, source))
    campaign.last_position += int(total)
    return {"total": int(total), "pending": int(total - duplicates), "skipped": int(duplicates)}


async def end_waiting(
    session: AsyncSession, campaign_id: str, status: str, reason: str
) -> dict[str, int]:
    """Give every recipient no live call holds a final `status`; the counter deltas.

    The caller holds the campaign row, so no claim can move these recipients meanwhile.
    """
    waiting = and_(
        CampaignRecipient.campaign_id == campaign_id,
        CampaignRecipient.status.in_(RECIPIENT_WAITING),
    )
    grouped = await session.execute(
        select(CampaignRecipient.status, func.count())
        .where(waiting)
        .group_by(CampaignRecipient.status)
    )
    deltas: dict[str, int] = {}
    for current, number in grouped.all():
        deltas[current] = -int(number)
        deltas[status] = deltas.get(status, 0) + int(number)
    if deltas:
        await session.execute(
            update(CampaignRecipient)
            .where(waiting)
            .values(status=status, status_reason=reason, next_attempt_at=None, updated_at=utcnow())
        )
    return deltas


async def end_retries_refused(
    session: AsyncSession, campaign_id: str, max_attempts: int, retry_on: Sequence[str]
) -> tuple[dict[str, int], list[int]]:
    """Recipients waiting for a retry that the campaign's (edited) retry policy no longer
    allows, attempts used up or their last outcome no longer retried, end with that
    outcome: the counter deltas, and the recipients ended.

    The caller holds the campaign row `FOR UPDATE`, so no claim and no end of a call moves
    these recipients meanwhile."""
    refused = (
        update(CampaignRecipient)
        .where(
            CampaignRecipient.campaign_id == campaign_id,
            CampaignRecipient.status == "retry_scheduled",
            CampaignRecipient.last_outcome.is_not(None),
            or_(
                CampaignRecipient.attempts >= max_attempts,
                CampaignRecipient.last_outcome.not_in(list(retry_on)),
            ),
        )
        .values(
            status=CampaignRecipient.last_outcome,
            status_reason="not retried: the retry policy was changed",
            next_attempt_at=None,
            updated_at=utcnow(),
        )
        .returning(CampaignRecipient.id, CampaignRecipient.status)
    )
    ended = (await session.execute(refused)).all()
    deltas: dict[str, int] = {}
    for _id, status in ended:
        deltas["retry_scheduled"] = deltas.get("retry_scheduled", 0) - 1
        deltas[status] = deltas.get(status, 0) + 1
    return deltas, [row_id for row_id, _status in ended]


async def wake_put_off(session: AsyncSession, campaign_id: str, marker: str) -> None:
    """Recipients put off until their calling hours open (their `status_reason` starts with
    `marker`) become due now, to be checked against the campaign's edited hours at their
    next claim. The caller holds the campaign row `FOR UPDATE`."""
    now = literal(utcnow(), CampaignRecipient.__table__.c.next_attempt_at.type)
    await session.execute(
        update(CampaignRecipient)
        .where(
            CampaignRecipient.campaign_id == campaign_id,
            CampaignRecipient.status.in_(("pending", "retry_scheduled")),
            CampaignRecipient.status_reason.startswith(marker, autoescape=True),
        )
        .values(
            next_attempt_at=case((CampaignRecipient.status == "pending", None), else_=now),
            status_reason=None,
            updated_at=utcnow(),
        )
    )


def recipients_query(campaign_id: str, status: str | None, page: Page) -> Select[Any]:
    """Dense positions make the unfiltered page a range scan, however deep the offset."""
    query = select(CampaignRecipient).where(CampaignRecipient.campaign_id == campaign_id)
    if status is None:
        query = query.where(CampaignRecipient.position > page.offset)
    else:
        query = query.where(CampaignRecipient.status == status).offset(page.offset)
    return query.order_by(CampaignRecipient.position).limit(page.limit)


async def recipients_in_order(
    session: AsyncSession, campaign_id: str, after_position: int, limit: int
) -> Sequence[CampaignRecipient]:
    query = (
        select(CampaignRecipient)
        .where(
            CampaignRecipient.campaign_id == campaign_id,
            CampaignRecipient.position > after_position,
        )
        .order_by(CampaignRecipient.position)
        .limit(limit)
    )
    return (await session.scalars(query)).all()


async def related(
    session: AsyncSession, campaigns: Sequence[Campaign]
) -> tuple[dict[str, Assistant], dict[str, PhoneNumber], dict[str, RecipientList]]:
    """The assistants, numbers and lists a page of campaigns names, in three queries."""
    assistant_ids = {c.assistant_id for c in campaigns}
    number_ids = {c.phone_number_id for c in campaigns}
    list_ids = {c.recipient_list_id for c in campaigns if c.recipient_list_id}
    assistants = (
        await session.scalars(select(Assistant).where(Assistant.id.in_(assistant_ids)))
    ).all()
    numbers = (
        await session.scalars(select(PhoneNumber).where(PhoneNumber.id.in_(number_ids)))
    ).all()
    lists = (
        (await session.scalars(select(RecipientList).where(RecipientList.id.in_(list_ids)))).all()
        if list_ids
        else []
    )
    return (
        {a.id: a for a in assistants},
        {n.id: n for n in numbers},
        {rl.id: rl for rl in lists},
    )


def campaigns_query(user_id: str, status: str | None) -> Select[Any]:
    query = select(Campaign).where(Campaign.user_id == user_id)
    if status is not None:
        query = query.where(Campaign.status == status)
    return query
