"""A CSV import into a recipient list, in constant memory, as a three-stage pipeline.

A thread parses batch k+2 (validating numbers, encoding metadata) while the event loop
checks batch k+1 for duplicates and the database writes batch k, so Python and the database
work at the same time. Everything happens in the caller's transaction: a refused file leaves
the list exactly as it was.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Iterator
from typing import IO, Any

from sqlalchemy.ext.asyncio import AsyncSession

from outdial.errors import Invalid
from outdial.models import RecipientList, utcnow
from outdial.recipient_list import repository
from outdial.recipient_list.csv_import import GoodRow, RowError, read_csv
from outdial.recipient_list.duplicates import Batch, Duplicates
from outdial.recipient_list.schemas import ImportReport, RowProblem

BATCH = 10_000
MAX_REPORTED = 100


class Report:
    """Counts every rejected row and keeps the first MAX_REPORTED of them, in row order."""

    def __init__(self) -> None:
        self.rejected = 0
        self.problems: list[RowProblem] = []

    @property
    def full(self) -> bool:
        return len(self.problems) >= MAX_REPORTED

    def add(self, errors: list[RowError]) -> None:
        """Record one batch's errors; batches arrive in row order."""
        self.rejected += len(errors)
        for error in sorted(errors, key=lambda e: e.row)[: MAX_REPORTED - len(self.problems)]:
            self.problems.append(
                RowProblem(
                    row=error.row, column=error.column, reason=error.reason, value=error.value
                )
            )

    def refusal(self) -> Invalid:
        """The 422 for a file without a single importable row."""
        return Invalid.many([_as_error_item(p) for p in self.problems])


def _as_error_item(problem: RowProblem) -> dict[str, Any]:
    where = f"row {problem.row}" + (f", column {problem.column}" if problem.column else "")
    return {
        "loc": ["body", "file", problem.row],
        "msg": f"{where}: {problem.reason}",
        "type": "csv_row",
        "row": problem.row,
        "column": problem.column,
    }


async def import_csv(
    session: AsyncSession,
    recipient_list: RecipientList,
    file: IO[bytes],
    *,
    replace: bool,
    use_template: bool,
    region: str,
) -> ImportReport:
    """Stream a CSV into the list; good rows land, bad ones are reported by row number."""
    header, rows = await asyncio.to_thread(read_csv, file, region=region, use_template=use_template)
    writer = repository.RowWriter(session, recipient_list.id)
    await writer.open()
    if replace:
        await repository.delete_rows(session, recipient_list.id)
    base = 0 if replace else recipient_list.row_count
    report = Report()
    duplicates = Duplicates(writer, base, header.names[header.phone_index])
    imported = 0
    pending = _read_ahead(rows)
    writing: asyncio.Task[None] | None = None

    async def database_free() -> None:
        if writing is not None:
            await writing

    try:
        while batch := await pending:
            pending = _read_ahead(rows)
            new, errors = await duplicates.split(
                batch, base + imported, not report.full, database_free
            )
            report.add(errors)
            await database_free()
            writing = asyncio.create_task(writer.add(new))
            imported += len(new)
        await database_free()
    finally:
        await _settle(pending, writing)
    await writer.close()
    if imported + report.rejected == 0:
        raise Invalid(["body", "file"], "the CSV has a header but no recipient rows")
    if imported == 0:
        raise report.refusal()
    recipient_list.row_count = base + imported
    recipient_list.updated_at = utcnow()
    await session.flush()
    return ImportReport(
        imported=imported,
        rejected=report.rejected,
        errors=report.problems,
        errors_truncated=report.rejected > len(report.problems),
    )


def _read_ahead(rows: Iterator[GoodRow | RowError]) -> asyncio.Task[Batch]:
    """Parse the next batch in a thread (JSON included), while the caller writes this one."""
    return asyncio.create_task(asyncio.to_thread(_parse_batch, rows))


def _parse_batch(rows: Iterator[GoodRow | RowError]) -> Batch:
    batch = Batch()
    for item in itertools.islice(rows, BATCH):
        if isinstance(item, GoodRow):
            batch.good.append((item.row, item.phone_number, json.dumps(item.metadata)))
        else:
            batch.errors.append(item)
    return batch


async def _settle(*tasks: asyncio.Task[Any] | None) -> None:
    """Let the reader thread and the last write finish before the caller moves on.

    Their failures matter only when nothing failed first; then they were already raised.
    """
    running = [task for task in tasks if task is not None]
    if running:
        await asyncio.wait(running)
    for task in running:
        if not task.cancelled():
            task.exception()
