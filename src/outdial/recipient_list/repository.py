"""Recipient-list SQL, including the bulk writes of a CSV import."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from outdial.models import Campaign, RecipientList, RecipientListRow
from outdial.repository import page_of
from outdial.schemas import Page

# Which CSV row each position of this import came from, to name the first of two duplicates.
# Stored as runs: a position's row is its position plus the shift of the last run starting at
# or before it. The shift only changes after a skipped row, so a clean file needs a handful.
_RUNS = "import_runs"
_CREATE_RUNS = {
    "postgresql": f"CREATE TEMP TABLE {_RUNS} (position integer PRIMARY KEY, "
    "shift integer NOT NULL) ON COMMIT DROP",
    "sqlite": f"CREATE TEMP TABLE {_RUNS} (position integer PRIMARY KEY, shift integer NOT NULL)",
}
_DROP_RUNS = f"DROP TABLE IF EXISTS temp.{_RUNS}"
_SHIFT_AT = f"SELECT shift FROM {_RUNS} WHERE position <= p ORDER BY position DESC LIMIT 1"
_LINES_AT = {
    "postgresql": f"""
        SELECT p AS position, p + ({_SHIFT_AT}) AS line
        FROM unnest(CAST(:positions AS integer[])) AS p""",
    "sqlite": f"""
        SELECT p AS position, p + ({_SHIFT_AT}) AS line
        FROM (SELECT value AS p FROM json_each(:positions))""",
}

# One index probe per number, whatever the planner believes about the list's size: during an
# import the list's rows are too new to be in the statistics, and a plan that scans the whole
# list for every batch would make the import quadratic. LIMIT keeps PostgreSQL's subquery a
# probe; SQLite's CROSS JOIN keeps the numbers as the outer loop.
_POSITIONS_OF = {
    "postgresql": """
        SELECT n.phone_number, r.position
        FROM unnest(CAST(:numbers AS varchar[])) AS n(phone_number)
        CROSS JOIN LATERAL (
            SELECT position FROM recipient_list_rows
            WHERE list_id = :list_id AND phone_number = n.phone_number LIMIT 1
        ) AS r""",
    "sqlite": """
        SELECT n.value AS phone_number, r.position
        FROM json_each(:numbers) AS n CROSS JOIN recipient_list_rows AS r
        WHERE r.list_id = :list_id AND r.phone_number = n.value""",
}
_ROW_COLUMNS = ["list_id", "position", "phone_number", "metadata"]


class RowWriter:
    """Appends one import's rows to a list, inside the caller's transaction.

    PostgreSQL gets COPY, SQLite batched inserts. Duplicates are found by the caller before
    writing (`positions_of`), so every write is a plain append with dense positions.
    """

    def __init__(self, session: AsyncSession, list_id: str) -> None:
        self.session = session
        self.list_id = list_id
        self.dialect = session.get_bind().dialect.name
        self.shift: int | None = None

    async def open(self) -> None:
        # SQLite may run this DDL outside the transaction, so an old table can survive.
        if self.dialect == "sqlite":
            await self.session.execute(text(_DROP_RUNS))
        await self.session.execute(text(_CREATE_RUNS[self.dialect]))

    async def close(self) -> None:
        if self.dialect == "sqlite":
            await self.session.execute(text(_DROP_RUNS))

    async def positions_of(self, numbers: Sequence[str]) -> dict[str, int]:
        """The position of each of `numbers` already in the list (from before or this import)."""
        if not numbers:
            return {}
        values: Any = list(numbers) if self.dialect == "postgresql" else json.dumps(numbers)
        result = await self.session.execute(
            text(_POSITIONS_OF[self.dialect]), {"list_id": self.list_id, "numbers": values}
        )
        return {row.phone_number: row.position for row in result}

    async def lines_at(self, positions: Sequence[int]) -> dict[int, int]:
        """The CSV row each of `positions` (written by this import) came from."""
        if not positions:
            return {}
        values: Any = list(positions) if self.dialect == "postgresql" else json.dumps(positions)
        result = await self.session.execute(text(_LINES_AT[self.dialect]), {"positions": values})
        return {row.position: row.line for row in result}

    async def add(self, rows: Sequence[tuple[int, int, str, str]]) -> None:
        """Write (position, CSV row, phone number, metadata as JSON) rows."""
        if not rows:
            return
        records = [(self.list_id, position, number, meta) for position, _, number, meta in rows]
        runs = []
        for position, line, _, _ in rows:
            if line - position != self.shift:
                self.shift = line - position
                runs.append((position, self.shift))
        connection = await self.session.connection()
        if self.dialect == "postgresql":
            raw = (await connection.get_raw_connection()).driver_connection
            await raw.copy_records_to_table(  # type: ignore[union-attr]
                "recipient_list_rows", records=records, columns=_ROW_COLUMNS
            )
            if runs:
                await raw.copy_records_to_table(  # type: ignore[union-attr]
                    _RUNS, records=runs, columns=["position", "shift"]
                )
        else:  # plain tuples straight to the driver: no per-row parameter processing
            await connection.exec_driver_sql(
                "INSERT INTO recipient_list_rows (list_id, position, phone_number, metadata) "
                "VALUES (?, ?, ?, ?)",
                records,
            )
            if runs:
                await connection.exec_driver_sql(
                    f"INSERT INTO {_RUNS} (position, shift) VALUES (?, ?)", runs
                )


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
