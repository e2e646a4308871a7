"""A CSV of numbers onto the do-not-call list, read like a recipient list's CSV.

The header is checked the same way (any of the phone column names recipient lists accept;
a `reason` column, when present, gives each row its reason), and each bad row is reported
by its spreadsheet row number while the good ones are added. It all happens in the
caller's transaction, so a refused file adds nothing.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from typing import IO

from sqlalchemy.ext.asyncio import AsyncSession

from outdial.do_not_call import repository
from outdial.do_not_call.schemas import MAX_REASON, DoNotCallImport
from outdial.errors import Invalid
from outdial.models import utcnow
from outdial.recipient_list.csv_import import GoodRow, RowError, read_csv
from outdial.recipient_list.importer import Report

BATCH = 10_000
REASON_COLUMN = "reason"


def _next_batch(rows: Iterator[GoodRow | RowError]) -> list[GoodRow | RowError]:
    return list(itertools.islice(rows, BATCH))


def _split(
    batch: list[GoodRow | RowError], default_reason: str | None
) -> tuple[dict[str, str | None], int, list[RowError]]:
    """Numbers to add (first row of a number wins), how many good rows, and row errors."""
    numbers: dict[str, str | None] = {}
    good = 0
    errors: list[RowError] = []
    for item in batch:
        if isinstance(item, RowError):
            errors.append(item)
            continue
        reason = item.metadata.get(REASON_COLUMN, default_reason)
        if reason is not None and len(reason) > MAX_REASON:
            errors.append(
                RowError(item.row, REASON_COLUMN, f"reason is longer than {MAX_REASON} characters")
            )
            continue
        good += 1
        numbers.setdefault(item.phone_number, reason)
    return numbers, good, errors


async def import_csv(
    session: AsyncSession,
    user_id: str,
    file: IO[bytes],
    *,
    reason: str | None,
    region: str,
) -> DoNotCallImport:
    """Add every good row's number; rows of numbers already listed count as `already_listed`."""
    _header, rows = await asyncio.to_thread(read_csv, file, region=region, use_template=False)
    report = Report()
    imported = already_listed = 0
    now = utcnow()
    while batch := await asyncio.to_thread(_next_batch, rows):
        numbers, good, errors = _split(batch, reason)
        report.add(errors)
        added = await repository.insert(session, user_id, list(numbers.items()), "csv", now)
        imported += len(added)
        already_listed += good - len(added)
    if imported + already_listed + report.rejected == 0:
        raise Invalid(["body", "file"], "the CSV has a header but no rows")
    if imported + already_listed == 0:
        raise report.refusal()
    return DoNotCallImport(
        imported=imported,
        already_listed=already_listed,
        rejected=report.rejected,
        errors=report.problems,
        errors_truncated=report.rejected > len(report.problems),
    )
