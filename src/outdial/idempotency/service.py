"""Idempotent creates: the first request with a key runs, a repeat gets its response back.

`claim` runs before the create, in its transaction; `remember` stores the response in that
same transaction (for `POST /calls`, in the one after the dial). A create that fails rolls
the claim back with everything else, so a key is only ever tied to a request that succeeded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import TypeVar

from fastapi import Response
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from outdial.database import write_transaction
from outdial.errors import Conflict
from outdial.idempotency import repository
from outdial.idempotency.dependencies import IdempotentRequest
from outdial.models import IdempotencyKey, utcnow

log = logging.getLogger("outdial")
T = TypeVar("T", bound=BaseModel)

REPLAYED_HEADER = "Idempotent-Replayed"
PURGE_EVERY_SECONDS = 3600
IN_PROGRESS = "A request with this Idempotency-Key is still in progress; retry it later"
REUSED = (
    "This Idempotency-Key was already used for a different request "
    "(another method, path or body); use a new key for a new request"
)


async def claim(session: AsyncSession, request: IdempotentRequest | None) -> Response | None:
    """None when the create may run (its key is now taken in this transaction); otherwise
    the first request's response. 409 when the key belongs to another request, or when its
    first request has not finished."""
    if request is None:
        return None
    now = utcnow()
    expired_before = now - request.retention
    if await repository.claim(
        session, request.user_id, request.key, request.fingerprint, now, expired_before
    ):
        return None
    # The failed claim locked the live row (or, on SQLite, holds the write lock): it stays.
    first = await repository.get(session, request.user_id, request.key)
    assert first is not None
    return _replay(request, first)


def _replay(request: IdempotentRequest, first: IdempotencyKey) -> Response:
    if first.response is None or first.status_code is None:
        raise Conflict(IN_PROGRESS)
    if first.fingerprint != request.fingerprint:
        raise Conflict(REUSED)
    return Response(
        first.response,
        status_code=first.status_code,
        media_type="application/json",
        headers={REPLAYED_HEADER: "true"},
    )


async def remember(
    session: AsyncSession, request: IdempotentRequest | None, body: T, status_code: int = 200
) -> T | Response:
    """Store the response of a claimed create and send exactly those bytes; without a key,
    the body goes out as usual."""
    if request is None:
        return body
    text = body.model_dump_json(by_alias=True)
    await repository.complete(session, request.user_id, request.key, status_code, text)
    return Response(text, status_code=status_code, media_type="application/json")


async def purge_expired(session: AsyncSession, retention: timedelta) -> int:
    """Delete the keys past their retention; how many there were.

    Only for space: an expired key that is still stored already counts as never seen.
    """
    return await repository.delete_created_before(session, utcnow() - retention)


@contextlib.asynccontextmanager
async def purging(
    sessionmaker: async_sessionmaker[AsyncSession], retention: timedelta
) -> AsyncIterator[None]:
    """Purge expired keys at start and every PURGE_EVERY_SECONDS while the block runs."""

    async def keep_purging() -> None:
        while True:
            try:
                async with write_transaction(sessionmaker) as session:
                    purged = await purge_expired(session, retention)
                if purged:
                    log.info("purged %d expired idempotency keys", purged)
            except Exception:
                log.exception("purging expired idempotency keys failed; trying again later")
            await asyncio.sleep(PURGE_EVERY_SECONDS)

    task = asyncio.create_task(keep_purging())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
