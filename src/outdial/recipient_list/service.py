"""Recipient lists: create (empty or from CSV), upload (replace or append), read, delete."""

from __future__ import annotations

from collections.abc import Sequence
from typing import IO

from sqlalchemy.ext.asyncio import AsyncSession

from outdial.errors import Conflict, NotFound
from outdial.ids import new_id
from outdial.models import RecipientList, RecipientListRow
from outdial.recipient_list import repository
from outdial.recipient_list.importer import import_csv
from outdial.recipient_list.schemas import ImportReport
from outdial.repository import get_owned
from outdial.schemas import Page


async def get(
    session: AsyncSession, user_id: str, list_id: str, *, lock: bool = False
) -> RecipientList:
    recipient_list = await get_owned(session, RecipientList, user_id, list_id, for_update=lock)
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
) -> tuple[RecipientList, ImportReport | None]:
    recipient_list = RecipientList(id=new_id("rl"), user_id=user_id, name=name, row_count=0)
    session.add(recipient_list)
    await session.flush()
    report = None
    if file is not None:
        report = await import_csv(
            session, recipient_list, file, replace=True, use_template=use_template, region=region
        )
    return recipient_list, report


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
    """Import into an existing list; two uploads to one list take turns (row lock)."""
    recipient_list = await get(session, user_id, list_id, lock=True)
    report = await import_csv(
        session, recipient_list, file, replace=replace, use_template=use_template, region=region
    )
    return recipient_list, report


async def delete(session: AsyncSession, user_id: str, list_id: str) -> None:
    recipient_list = await get(session, user_id, list_id, lock=True)
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
