"""A CSV import into a recipient list, in constant memory.

A thread parses the next batch of rows while the current one is checked for duplicates and
written, so the database works while Python validates numbers. Everything happens in the
caller's transaction: a refused file leaves the list exactly as it was.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from sqlalchemy.ext.asyncio import AsyncSession

from outdial.errors import Invalid
from outdial.models import RecipientList, utcnow
from outdial.recipient_list import repository
from outdial.recipient_list.csv_import import GoodRow, RowError, read_csv
from outdial.recipient_list.schemas import ImportReport, RowProblem

BATCH = 5_000
MAX_REPORTED = 100


@dataclass
class Batch:
    """Parsed rows: good ones as (row, phone number, metadata as JSON), and row errors."""

    good: list[tuple[int, str, str]] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.good or self.errors)


class SeenNumbers:
    """The numbers this import has written, in a fixed 4 MiB Bloom filter.

    Probing the list for every number costs the database almost as much as writing the row;
    "not seen" here is certain, so only the few numbers it may have seen are probed.
    """

    BITS = 1 << 25

    def __init__(self) -> None:
        self._bits = bytearray(self.BITS // 8)

    def add(self, number: str) -> None:
        digest = hash(number)  # two slots from one 64-bit hash
        for slot in (digest % self.BITS, (digest >> 32) % self.BITS):
            self._bits[slot >> 3] |= 1 << (slot & 7)

    def may_contain(self, number: str) -> bool:
        digest = hash(number)
        first, second = digest % self.BITS, (digest >> 32) % self.BITS
        bits = self._bits
        return bool(bits[first >> 3] >> (first & 7) & 1 and bits[second >> 3] >> (second & 7) & 1)


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
    phone_column = header.names[header.phone_index]
    writer = repository.RowWriter(session, recipient_list.id)
    await writer.open()
    if replace:
        await repository.delete_rows(session, recipient_list.id)
    base = 0 if replace else recipient_list.row_count
    report = Report()
    seen = None if base else SeenNumbers()  # rows from before this import: probe every number
    imported = 0
    pending = _read_ahead(rows)
    try:
        while batch := await pending:
            pending = _read_ahead(rows)
            accepted, errors = await _check_duplicates(
                writer, batch, base, base + imported, phone_column, report.full, seen
            )
            report.add(errors)
            await writer.add(accepted)
            imported += len(accepted)
    finally:
        await _settle(pending)
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


async def _settle(task: asyncio.Task[Batch]) -> None:
    """Let the reader thread finish its batch before the caller closes the file."""
    await asyncio.wait([task])
    if not task.cancelled():
        task.exception()  # retrieved: a failure here only matters if nothing failed first


async def _check_duplicates(
    writer: repository.RowWriter,
    batch: Batch,
    base: int,
    last_position: int,
    phone_column: str,
    report_full: bool,
    seen: SeenNumbers | None,
) -> tuple[list[tuple[int, int, str, str]], list[RowError]]:
    """Split a batch into rows to write, with their positions, and rejected rows.

    A number is a duplicate when an earlier row of this batch has it, or the list already
    does: at a position up to `base` it was there before this import, after it an earlier
    batch wrote it. With `seen`, only numbers it may contain are looked up.
    """
    numbers = [number for _, number, _ in batch.good]
    if seen is not None:
        numbers = [number for number in numbers if seen.may_contain(number)]
    known = await writer.positions_of(numbers)
    first_row: dict[str, int] = {}
    accepted: list[tuple[int, int, str, str]] = []
    errors = list(batch.errors)
    earlier: list[tuple[int, str, int]] = []
    for row, number, metadata in batch.good:
        if number in first_row:
            errors.append(
                RowError(row, phone_column, f"duplicate of row {first_row[number]}", number)
            )
        elif number in known and known[number] <= base:
            errors.append(RowError(row, phone_column, "duplicate: already in the list", number))
        elif number in known:
            earlier.append((row, number, known[number]))
        else:
            first_row[number] = row
            accepted.append((last_position + len(accepted) + 1, row, number, metadata))
            if seen is not None:
                seen.add(number)
    # Naming the first row costs a query: only worth it while the report has room.
    lines = {} if report_full else await writer.lines_at([p for _, _, p in earlier])
    for row, number, position in earlier:
        reason = f"duplicate of row {lines[position]}" if position in lines else "duplicate"
        errors.append(RowError(row, phone_column, reason, number))
    return accepted, errors
