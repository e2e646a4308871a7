"""Calls: read them (placing calls is the dialer's job)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from outdial.call import repository
from outdial.errors import NotFound
from outdial.models import Call
from outdial.repository import get_owned
from outdial.schemas import Page


async def get(session: AsyncSession, user_id: str, call_id: str) -> Call:
    call = await get_owned(session, Call, user_id, call_id)
    if call is None:
        raise NotFound("Call")
    return call


async def page(
    session: AsyncSession,
    user_id: str,
    page: Page,
    *,
    campaign_id: str | None = None,
    status: str | None = None,
) -> tuple[Sequence[Call], int]:
    return await repository.page(session, user_id, page, campaign_id=campaign_id, status=status)
