"""Recipient lists: create (empty or from CSV), upload (replace or append), read, delete."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterator, Sequence
from typing import IO

from sqlalchemy.ext.asyncio import AsyncSession

from outdial.errors import Conflict, Invalid, NotFound
from outdial.ids import new_id
from outdial.models import RecipientList, RecipientListRow, utcnow
from outdial.recipient_list import repository
from outdial.recipient_list.csv_import import GoodRow, RowError, read_csv
from outdial.recipient_list.schemas import ImportReport, RowProblem
from outdial.repository import get_owned
from outdial.schemas import Page

BATCH = 5_000
MAX_REPORTED = 100
Progress = Callable[[int], None]


async def get(session: AsyncSession, user_id: str, list_id: str) -> RecipientList:
    recipient_list = await get_owned(session, RecipientList, user_id, list_id)
    if recipient_list is None:
        raise NotFound("Recipient list")
    return recipient_list


async def create(
    session: AsyncSession,
    user_id: str,
    name: str | None,
    file: IO[bytes] | None,
    *,
    use_template: bool,
    region: str,
    progress: Progress | None = None,
) -> tuple[RecipientList, ImportReport | None]:
    recipient_list = RecipientList(id=new_id("rl"), user_id=user_id, name=name, row_count=0)
    session.add(recipient_list)
    await session.flush()
    report = None
    if file is not None:
        report = await import_csv(
            session,
            recipient_list,
            file,
            replace=True,
            use_template=use_template,
            region=region,
            progress=progress,
        )
    return recipient_list, report


def _next_batch(rows: Iterator[GoodRow | RowError]) -> list[GoodRow | RowError]:
    return list(itertools.islice(rows, BATCH))


async def import_csv(
    session: AsyncSession,
    recipient_list: RecipientList,
    file: IO[bytes],
    *,
    replace: bool,
    use_template: bool,
    region: str,
    progress: Progress | None = None,
) -> ImportReport:
    """Stream a CSV into the list; good rows land, bad ones are reported by row number.

    Runs inside the caller's transaction: a failure leaves the list exactly as it was.
    """
    _header, rows = await asyncio.to_thread(
        read_csv, file, region=region, use_template=use_template
    )
    staging = repository.Staging(session)
    await staging.create()
    problems: list[RowProblem] = []
    rejected = staged = 0
    pending = asyncio.create_task(asyncio.to_thread(_next_batch, rows))
    while batch := await pending:
        pending = asyncio.create_task(asyncio.to_thread(_next_batch, rows))
        good = [(r.row, r.phone_number, r.metadata) for r in batch if isinstance(r, GoodRow)]
        for error in (r for r in batch if isinstance(r, RowError)):
            rejected += 1
            if len(problems) < MAX_REPORTED:
                problems.append(RowProblem(**error.as_dict()))
        if good:
            await staging.add(good)
            staged += len(good)
        if progress:
            progress(len(batch))
    if staged + rejected == 0:
        raise Invalid(["body", "file"], "the CSV has a header but no recipient rows")
    duplicates, examples = await staging.duplicates(recipient_list.id, not replace, MAX_REPORTED)
    for line, number, first in examples:
        reason = f"duplicate of row {first}" if first != line else "duplicate: already in the list"
        problems.append(RowProblem(row=line, column=None, reason=reason, value=number))
    rejected += duplicates
    if staged - duplicates == 0:
        raise Invalid.many(
            [_as_loc(p) for p in sorted(problems, key=lambda p: p.row)[:MAX_REPORTED]]
            or [{"loc": ["body", "file"], "msg": "no importable rows", "type": "value_error"}]
        )
    if replace:
        await repository.delete_rows(session, recipient_list.id)
    base = 0 if replace else recipient_list.row_count
    imported = await staging.copy_into(recipient_list.id, base, not replace)
    await staging.drop()
    recipient_list.row_count = base + imported
    recipient_list.updated_at = utcnow()
    await session.flush()
    problems.sort(key=lambda p: p.row)
    return ImportReport(
        imported=imported,
        rejected=rejected,
        errors=problems[:MAX_REPORTED],
        errors_truncated=rejected > MAX_REPORTED,
    )


def _as_loc(problem: RowProblem) -> dict[str, object]:
    where = f"row {problem.row}" + (f", column {problem.column}" if problem.column else "")
    return {
        "loc": ["body", "file", problem.row],
        "msg": f"{where}: {problem.reason}",
        "type": "csv_row",
        "row": problem.row,
        "column": problem.column,
    }


async def upload(
    session: AsyncSession,
    user_id: str,
    list_id: str,
    file: IO[bytes],
    *,
    replace: bool,
    use_template: bool,
    region: str,
) -> tuple[RecipientList, ImportReport]:
    recipient_list = await get(session, user_id, list_id)
    report = await import_csv(
        session, recipient_list, file, replace=replace, use_template=use_template, region=region
    )
    return recipient_list, report


async def delete(session: AsyncSession, user_id: str, list_id: str) -> None:
    recipient_list = await get(session, user_id, list_id)
    if await repository.used_by_draft_campaign(session, recipient_list.id):
        raise Conflict("Recipient list is attached to a draft campaign; detach it first")
    await repository.delete_rows(session, recipient_list.id)
    await session.delete(recipient_list)
    await session.flush()


async def page(
    session: AsyncSession, user_id: str, page: Page
) -> tuple[Sequence[RecipientList], int]:
    return await repository.page(session, user_id, page)


async def rows_page(
    session: AsyncSession, user_id: str, list_id: str, page: Page
) -> tuple[Sequence[RecipientListRow], int]:
    recipient_list = await get(session, user_id, list_id)
    return await repository.rows_page(session, recipient_list.id, page), recipient_list.row_count
