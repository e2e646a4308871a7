"""Idempotency-key rows: claim a key, read and complete its row, purge expired ones."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncSession

from outdial.database import dialect_insert
from outdial.models import IdempotencyKey


async def claim(
    session: AsyncSession,
    user_id: str,
    key: str,
    fingerprint: str,
    now: datetime,
    expired_before: datetime,
) -> bool:
    """Insert the key's row, or take over an expired one; False when a live row exists.

    One statement. A concurrent claim of the same key waits for this transaction to end
    (the primary key's lock), then finds the row this one committed, or none if it rolled
    back.
    """
    statement = dialect_insert(session, IdempotencyKey).values(
        user_id=user_id,
        key=key,
        fingerprint=fingerprint,
        status_code=None,
        response=None,
        created_at=now,
    )
    statement = statement.on_conflict_do_update(
        index_elements=[IdempotencyKey.user_id, IdempotencyKey.key],
        set_={
            "fingerprint": statement.excluded.fingerprint,
            "status_code": None,
            "response": None,
            "created_at": statement.excluded.created_at,
        },
        where=IdempotencyKey.created_at < expired_before,
    )
    claimed = await session.execute(statement.returning(IdempotencyKey.key))
    return claimed.first() is not None


async def get(session: AsyncSession, user_id: str, key: str) -> IdempotencyKey | None:
    return await session.get(IdempotencyKey, (user_id, key), populate_existing=True)


async def complete(
    session: AsyncSession, user_id: str, key: str, status_code: int, response: str
) -> None:
    await session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.user_id == user_id, IdempotencyKey.key == key)
        .values(status_code=status_code, response=response)
    )


async def delete_created_before(session: AsyncSession, before: datetime) -> int:
    result = await session.execute(delete(IdempotencyKey).where(IdempotencyKey.created_at < before))
    return int(result.rowcount)  # type: ignore[attr-defined]
