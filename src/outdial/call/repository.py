from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from outdial.ids import is_well_formed
from outdial.models import Call
from outdial.repository import page_of
from outdial.schemas import Page


async def page(
    session: AsyncSession,
    user_id: str,
    page: Page,
    *,
    campaign_id: str | None = None,
    status: str | None = None,
) -> tuple[Sequence[Call], int]:
    query = select(Call).where(Call.user_id == user_id)
    if campaign_id is not None:
        if not is_well_formed(campaign_id):
            return [], 0
        query = query.where(Call.campaign_id == campaign_id)
    if status is not None:
        query = query.where(Call.status == status)
    return await page_of(session, query, page, Call.created_at.desc(), Call.id.desc())
