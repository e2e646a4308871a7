"""Requests per minute per API key: counted in this process, reported in `X-RateLimit-*`.

Fixed one-minute windows aligned to the clock (`X-RateLimit-Reset` is when the current one
ends). The count lives in memory: one dict lookup per authenticated request, no database
write. Several API processes each count on their own (see docs/decisions.md).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

WINDOW_SECONDS = 60
STATE_KEY = "rate_limit"  # where the request's Quota waits for the headers (request.state)


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
        self._window = -1
        self._counts: dict[str, int] = {}

    def limit_of(self, tier: str | None) -> int:
        """A tier no longer configured falls back to the default tier."""
        return self.tiers.get(tier, self.default_limit) if tier else self.default_limit

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
