"""Prometheus metrics: HTTP traffic now; the dialer adds its own gauges and counters."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

registry = CollectorRegistry(auto_describe=True)
# Label values must stay few: any other method a client invents is counted as OTHER.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

http_requests = Counter(
    "outdial_http_requests",
    "HTTP requests answered, by route and status class.",
    ["method", "route", "status"],
    registry=registry,
)
http_seconds = Histogram(
    "outdial_http_request_seconds",
    "Time to answer an HTTP request, by route.",
    ["method", "route"],
    registry=registry,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


class Observe:
    """ASGI middleware: count and time each request under its route template, not its raw path.

    A plain ASGI wrapper rather than Starlette's `BaseHTTPMiddleware`, which costs a task
    and a stream per request on the webhook path.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            template = getattr(scope.get("route"), "path", "unmatched")
            method = scope["method"] if scope["method"] in METHODS else "OTHER"
            http_requests.labels(method, template, f"{status // 100}xx").inc()
            http_seconds.labels(method, template).observe(time.perf_counter() - started)


def exposition() -> bytes:
    return generate_latest(registry)
