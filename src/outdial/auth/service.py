"""Users and API keys: creation, revocation, and checking a request's credentials."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from outdial.errors import NotFound, Unauthorized
from outdial.ids import new_id
from outdial.models import ApiKey, User, utcnow
from outdial.secrets_store import hash_api_key, new_api_key


@dataclass(frozen=True)
class IssuedKey:
    """An API key as shown once, at creation; only its hash is kept."""

    id: str
    user_id: str
    key: str


async def create_user(session: AsyncSession, name: str) -> User:
    user = User(id=new_id("user"), name=name)
    session.add(user)
    await session.flush()
    return user


async def create_key(
    session: AsyncSession, user_id: str, label: str | None = None, tier: str | None = None
) -> IssuedKey:
    """A new key for `user_id`; `tier` names its rate limit (None: the default tier)."""
    if await session.get(User, user_id) is None:
        raise NotFound("User")
    key = new_api_key()
    record = ApiKey(
        id=new_id("key"),
        user_id=user_id,
        key_hash=hash_api_key(key),
        prefix=key[:12],
        label=label,
        tier=tier,
    )
    session.add(record)
    await session.flush()
    return IssuedKey(id=record.id, user_id=user_id, key=key)


async def revoke_key(session: AsyncSession, key_id: str) -> ApiKey:
    record = await session.get(ApiKey, key_id)
    if record is None:
        raise NotFound("API key")
    if record.revoked_at is None:
        record.revoked_at = utcnow()
    await session.flush()
    return record


async def list_users(session: AsyncSession) -> list[User]:
    return list((await session.scalars(select(User).order_by(User.created_at))).all())


async def list_keys(session: AsyncSession, user_id: str) -> list[ApiKey]:
    query = select(ApiKey).where(ApiKey.user_id == user_id).order_by(ApiKey.created_at)
    return list((await session.scalars(query)).all())


async def authenticate(session: AsyncSession, key: str, user_id: str) -> ApiKey:
    """The key's record when `key` is a live key of `user_id`; Unauthorized otherwise."""
    record = await session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_api_key(key)))
    if record is None or record.revoked_at is not None or record.user_id != user_id:
        raise Unauthorized()
    return record
