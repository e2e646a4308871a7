"""Requests per minute per API key, reported in `X-RateLimit-*`.

Fixed one-minute windows aligned to the clock (`X-RateLimit-Reset` is when the current one
ends). On SQLite, whose service is one API process, the count lives in memory: one dict
lookup per authenticated request. On PostgreSQL every API process counts in one table
(`SharedRateLimiter`), so `outdial serve --workers N` or several hosts give a key its
limit, not N times it (docs/decisions.md, "Rate limits").
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import DBAPIError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from outdial.database import (
    create_engine,
    create_sessionmaker,
    pool_overflow,
    write_alone,
    write_alone_first,
)
from outdial.models import RateLimitCount

log = logging.getLogger("outdial")
WINDOW_SECONDS = 60
STATE_KEY = "rate_limit"  # where the request's Quota waits for the headers (request.state)
POOL_SIZE = 4  # the shared counter's own connections, per API process


@dataclass(frozen=True, slots=True)
class Quota:
    """Where one API key stands in the current window, after counting this request."""

    limit: int
    used: int
    reset: int  # Unix time at which the window ends
    now: float

    @property
    def exceeded(self) -> bool:
        return self.used > self.limit

    @property
    def retry_after(self) -> int:
        return max(1, math.ceil(self.reset - self.now))

    def headers(self) -> list[tuple[bytes, bytes]]:
        remaining = max(0, self.limit - self.used)
        return [
            (b"x-ratelimit-limit", str(self.limit).encode()),
            (b"x-ratelimit-remaining", str(remaining).encode()),
            (b"x-ratelimit-reset", str(self.reset).encode()),
        ]


class RateLimiter:
    """Counts requests per API key in fixed windows; a key's limit comes from its tier."""

    def __init__(
        self,
        tiers: Mapping[str, int],
        default_tier: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.tiers = dict(tiers)
        self.default_limit = self.tiers[default_tier]
        self.clock = clock

    def limit_of(self, tier: str | None) -> int:
        """A tier no longer configured falls back to the default tier."""
        return self.tiers.get(tier, self.default_limit) if tier else self.default_limit

    async def take(self, key_id: str, tier: str | None) -> Quota:
        """Count one request of the key; where the key stands after it."""
        raise NotImplementedError

    async def close(self) -> None:
        """Release what the count holds."""


class MemoryRateLimiter(RateLimiter):
    """Counts in this process's memory (SQLite: one API process)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # (RateLimiter's)
        super().__init__(*args, **kwargs)
        self._window = -1
        self._counts: dict[str, int] = {}

    def count(self, key_id: str, tier: str | None) -> Quota:
        now = self.clock()
        window = int(now // WINDOW_SECONDS)
        if window != self._window:  # a new minute: every key starts again
            self._window = window
            self._counts = {}
        limit = self.limit_of(tier)
        used = min(self._counts.get(key_id, 0) + 1, limit + 1)
        self._counts[key_id] = used
        return Quota(limit, used, (window + 1) * WINDOW_SECONDS, now)

    async def take(self, key_id: str, tier: str | None) -> Quota:
        return self.count(key_id, tier)


_counts = cast(Table, RateLimitCount.__table__)
_KEY = (_counts.c.key_id, _counts.c.minute)
# One request more for the key in this minute, the row made by the minute's first request.
_TAKE = (
    insert(_counts)
    .values(key_id=bindparam("key_id"), minute=bindparam("minute"), used=1)
    .on_conflict_do_update(index_elements=_KEY, set_={"used": _counts.c.used + 1})
    .returning(_counts.c.used)
)
_FORGET = delete(_counts).where(_counts.c.minute < bindparam("before"))


class SharedRateLimiter(RateLimiter):
    """Counts in PostgreSQL, so every API process shares each key's count: one upsert per
    request (a round trip, in autocommit), exact however the requests are spread.

    It has a small pool of its own: a request counts while it holds the session's
    connection, and counting from the same pool could leave every request of a busy
    process holding one connection and waiting for another. Its commits do not wait for
    the disk (`synchronous_commit = off`: a crash may forget the last moment's counts),
    which made the count cost a request about 1.7 ms. As each process enters a new minute
    it deletes the minutes before the last, beside the request that noticed (a failed
    delete is logged and tried again at the next minute)."""

    def __init__(
        self,
        url: str,
        tiers: Mapping[str, int],
        default_tier: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(tiers, default_tier, clock)
        self.engine = create_engine(url, pool_size=POOL_SIZE, durable=False)
        self.sessionmaker = create_sessionmaker(self.engine)
        self._minute = -1
        self._forgetting: asyncio.Task[None] | None = None

    async def take(self, key_id: str, tier: str | None) -> Quota:
        now = self.clock()
        minute = int(now // WINDOW_SECONDS)
        used = await self._count(key_id, minute)
        if minute != self._minute and (self._forgetting is None or self._forgetting.done()):
            self._minute = minute
            self._forgetting = asyncio.create_task(self._forget(minute - 1))
        return Quota(self.limit_of(tier), used, (minute + 1) * WINDOW_SECONDS, now)

    async def _forget(self, before: int) -> None:
        try:
            await write_alone(self.sessionmaker, _FORGET, {"before": before})
        except (DBAPIError, OSError) as exc:
            self._minute = -1  # the next request tries again
            log.warning("old rate-limit counts not deleted: %s", exc)

    async def _count(self, key_id: str, minute: int) -> int:
        """The key's count in this minute, this request included. After a database restart
        each pooled connection is found lost once: the count is tried again on the next
        (at worst a request whose count committed as its connection died is counted
        twice), so a restart costs the API's requests no more 503s than the app's pool."""
        params = {"key_id": key_id, "minute": minute}
        for _ in range(POOL_SIZE + pool_overflow(POOL_SIZE)):
            try:
                return await self._upsert(params)
            except DBAPIError as exc:
                if not exc.connection_invalidated:
                    raise
        return await self._upsert(params)

    async def _upsert(self, params: Mapping[str, Any]) -> int:
        row = await write_alone_first(self.sessionmaker, _TAKE, params)
        return int(row.used) if row is not None else 1  # (RETURNING always gives the row)

    async def close(self) -> None:
        if self._forgetting is not None:
            await self._forgetting
        await self.engine.dispose()


def rate_limiter_for(
    url: str,
    tiers: Mapping[str, int],
    default_tier: str,
    clock: Callable[[], float] = time.time,
) -> RateLimiter:
    """The shared counter on PostgreSQL, the in-memory one on SQLite."""
    if url.startswith("postgresql"):
        return SharedRateLimiter(url, tiers, default_tier, clock)
    return MemoryRateLimiter(tiers, default_tier, clock)


class RateLimitHeaders:
    """Pure ASGI middleware: adds `X-RateLimit-*` to every response whose request was
    counted (the auth dependency leaves the Quota in the request state), errors included.

    Requests that never authenticate (webhooks, health, metrics, a 401) pass untouched.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                quota = scope.get("state", {}).get(STATE_KEY)
                if quota is not None:
                    message["headers"] = [*message.get("headers", ()), *quota.headers()]
            await send(message)

        await self.app(scope, receive, sending)
