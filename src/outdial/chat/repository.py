"""Chat sessions and their messages."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from outdial.models import ChatMessage, ChatSession, utcnow
from outdial.repository import get_owned


async def get(session: AsyncSession, user_id: str, session_id: str) -> ChatSession | None:
    return await get_owned(session, ChatSession, user_id, session_id)


async def recent_messages(
    session: AsyncSession, session_id: str, limit: int
) -> list[tuple[str, str]]:
    """The newest `limit` messages as (role, text), oldest first."""
    rows = await session.execute(
        select(ChatMessage.role, ChatMessage.text)
        .where(ChatMessage.session_id == session_id)
        .order_by(ChatMessage.id.desc())
        .limit(limit)
    )
    return [(role, text) for role, text in reversed(rows.all())]


async def messages(session: AsyncSession, session_id: str) -> Sequence[ChatMessage]:
    rows = await session.scalars(
        select(ChatMessage).where(ChatMessage.session_id == session_id).order_by(ChatMessage.id)
    )
    return rows.all()


async def add_turn(
    session: AsyncSession, chat: ChatSession, user_text: str, reply: str, *, new: bool
) -> None:
    """Store one exchange; a new session is created with it, an existing one is touched."""
    now = utcnow()
    if new:
        chat.created_at = chat.updated_at = now
        session.add(chat)
    else:
        chat = await session.merge(chat)
        chat.updated_at = now
    await session.flush()
    session.add_all(
        [
            ChatMessage(session_id=chat.id, role="user", text=user_text, created_at=now),
            ChatMessage(session_id=chat.id, role="assistant", text=reply, created_at=now),
        ]
    )
    await session.flush()
