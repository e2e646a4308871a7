from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from outdial.models import Assistant, Campaign
from outdial.repository import page_of
from outdial.schemas import Page


async def page(session: AsyncSession, user_id: str, page: Page) -> tuple[Sequence[Assistant], int]:
    query = select(Assistant).where(Assistant.user_id == user_id, Assistant.deleted_at.is_(None))
    return await page_of(session, query, page, Assistant.created_at.desc(), Assistant.id)


async def in_use_by_open_campaign(session: AsyncSession, assistant_id: str) -> bool:
    query = select(Campaign.id).where(
        Campaign.assistant_id == assistant_id, Campaign.status != "completed"
    )
    return (await session.scalars(query.limit(1))).first() is not None
