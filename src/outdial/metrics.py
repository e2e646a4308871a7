"""Prometheus metrics: HTTP traffic now; the dialer adds its own gauges and counters."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response

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


async def observe(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    """Middleware: count and time each request under its route template, not its raw path."""
    started = time.perf_counter()
    response = await call_next(request)
    route = request.scope.get("route")
    template = getattr(route, "path", "unmatched")
    method = request.method if request.method in METHODS else "OTHER"
    http_requests.labels(method, template, f"{response.status_code // 100}xx").inc()
    http_seconds.labels(method, template).observe(time.perf_counter() - started)
    return response


def exposition() -> bytes:
    return generate_latest(registry)
