"""Recipient-list SQL, including the bulk import through a staging table.

A CSV is streamed into a temporary staging table (COPY on PostgreSQL, batched inserts on
SQLite); duplicates are then found and the survivors copied into the list with dense
positions, all by SQL, so memory does not grow with the file.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from outdial.models import Campaign, RecipientList, RecipientListRow
from outdial.repository import page_of
from outdial.schemas import Page

STAGING = "import_staging"

_CREATE_STAGING = {
    "postgresql": f"CREATE TEMP TABLE {STAGING} (line integer NOT NULL, "
    "phone_number varchar(20) NOT NULL, metadata text NOT NULL) ON COMMIT DROP",
    "sqlite": f"CREATE TEMP TABLE {STAGING} (line integer NOT NULL, "
    "phone_number varchar(20) NOT NULL, metadata text NOT NULL)",
}
_INDEX_STAGING = f"CREATE INDEX ix_{STAGING} ON {STAGING} (phone_number, line)"
_DROP_STAGING = f"DROP TABLE IF EXISTS temp.{STAGING}"

# A staged row is a duplicate when an earlier line has its number, or the list already does.
_DUPLICATE = f"""
    EXISTS (SELECT 1 FROM {STAGING} t WHERE t.phone_number = s.phone_number AND t.line < s.line)
    OR (CAST(:check_existing AS boolean) AND EXISTS (
        SELECT 1 FROM recipient_list_rows r
        WHERE r.list_id = CAST(:list_id AS varchar) AND r.phone_number = s.phone_number))
"""

_DUPLICATE_COUNT = f"SELECT count(*) FROM {STAGING} s WHERE {_DUPLICATE}"

_DUPLICATE_EXAMPLES = f"""
    SELECT s.line, s.phone_number,
           (SELECT min(t.line) FROM {STAGING} t WHERE t.phone_number = s.phone_number) AS first
    FROM {STAGING} s WHERE {_DUPLICATE}
    ORDER BY s.line LIMIT :limit
"""

_INSERT_ROWS = {
    dialect: f"""
        INSERT INTO recipient_list_rows (list_id, position, phone_number, metadata)
        SELECT CAST(:list_id AS varchar), :base + row_number() OVER (ORDER BY s.line),
               s.phone_number, {metadata}
        FROM {STAGING} s WHERE NOT ({_DUPLICATE})
    """
    for dialect, metadata in (("postgresql", "CAST(s.metadata AS jsonb)"), ("sqlite", "s.metadata"))
}


class Staging:
    """The temporary table one import streams through, inside the caller's transaction."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.dialect = session.get_bind().dialect.name

    async def create(self) -> None:
        if self.dialect == "sqlite":
            await self.session.execute(text(_DROP_STAGING))
        await self.session.execute(text(_CREATE_STAGING[self.dialect]))

    async def add(self, rows: Sequence[tuple[int, str, dict[str, Any]]]) -> None:
        records = [(line, number, json.dumps(metadata)) for line, number, metadata in rows]
        if self.dialect == "postgresql":
            connection = await self.session.connection()
            raw = await connection.get_raw_connection()
            await raw.driver_connection.copy_records_to_table(  # type: ignore[union-attr]
                STAGING, records=records, columns=["line", "phone_number", "metadata"]
            )
        else:
            await self.session.execute(
                text(f"INSERT INTO {STAGING} VALUES (:line, :phone_number, :metadata)"),
                [{"line": r[0], "phone_number": r[1], "metadata": r[2]} for r in records],
            )

    async def duplicates(
        self, list_id: str, check_existing: bool, limit: int
    ) -> tuple[int, list[tuple[int, str, int]]]:
        """How many staged rows are duplicates, and the first `limit` (line, number, first line)."""
        await self.session.execute(text(_INDEX_STAGING))
        params = {"list_id": list_id, "check_existing": check_existing}
        count = await self.session.scalar(text(_DUPLICATE_COUNT), params)
        examples = await self.session.execute(text(_DUPLICATE_EXAMPLES), {**params, "limit": limit})
        return int(count or 0), [(r.line, r.phone_number, r.first) for r in examples]

    async def copy_into(self, list_id: str, base: int, check_existing: bool) -> int:
        params = {"list_id": list_id, "base": base, "check_existing": check_existing}
        result = await self.session.execute(text(_INSERT_ROWS[self.dialect]), params)
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def drop(self) -> None:
        if self.dialect == "sqlite":
            await self.session.execute(text(_DROP_STAGING))


async def delete_rows(session: AsyncSession, list_id: str) -> None:
    await session.execute(delete(RecipientListRow).where(RecipientListRow.list_id == list_id))


async def page(
    session: AsyncSession, user_id: str, page: Page
) -> tuple[Sequence[RecipientList], int]:
    query = select(RecipientList).where(RecipientList.user_id == user_id)
    return await page_of(session, query, page, RecipientList.created_at.desc(), RecipientList.id)


async def rows_page(session: AsyncSession, list_id: str, page: Page) -> Sequence[RecipientListRow]:
    """Positions are dense, so any offset is a range scan on (list_id, position)."""
    query = (
        select(RecipientListRow)
        .where(RecipientListRow.list_id == list_id, RecipientListRow.position > page.offset)
        .order_by(RecipientListRow.position)
        .limit(page.limit)
    )
    return (await session.scalars(query)).all()


async def used_by_draft_campaign(session: AsyncSession, list_id: str) -> bool:
    query = (
        select(func.count())
        .select_from(Campaign)
        .where(Campaign.recipient_list_id == list_id, Campaign.status == "draft")
    )
    return bool(await session.scalar(query))
