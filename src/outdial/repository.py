"""Queries every feature shares: fetch one owned row, page through owned rows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from outdial.ids import is_well_formed
from outdial.schemas import Page

T = TypeVar("T")


async def get_owned(
    session: AsyncSession, model: type[T], user_id: str, row_id: str, *, for_update: bool = False
) -> T | None:
    """The row with this id if it belongs to `user_id` (and is not soft-deleted), else None."""
    if not is_well_formed(row_id):
        return None
    query = select(model).where(model.id == row_id, model.user_id == user_id)  # type: ignore[attr-defined]
    if hasattr(model, "deleted_at"):
        query = query.where(model.deleted_at.is_(None))  # type: ignore[attr-defined]
    if for_update:
        query = query.with_for_update()
    return (await session.scalars(query)).one_or_none()


async def page_of(
    session: AsyncSession,
    query: Select[Any],
    page: Page,
    *order_by: ColumnElement[Any] | InstrumentedAttribute[Any],
) -> tuple[Sequence[Any], int]:
    """One page of `query` and the total it would return without paging."""
    total = await session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    rows = (
        await session.scalars(query.order_by(*order_by).limit(page.limit).offset(page.offset))
    ).all()
    return rows, int(total or 0)
