"""The HTTP client the service's outbound requests go through.

httpx is the interface everywhere (adapters, pre-dial checks, call action notices);
underneath, aiohttp carries the requests. (The carrier simulator, a test and benchmark
stand-in, sends its callbacks through aiohttp alone.) httpx's own connection
pool costs 1.3 to 4.7 ms of CPU per request (more with more requests in flight); over the
aiohttp transport a request costs 0.5 to 0.9 ms (docs/benchmarks.md, "HTTP clients").
"""

from __future__ import annotations

from typing import Any

import aiohttp
import httpx
from httpx_aiohttp import HttpxAiohttpClient


def client(*, timeout: float, limits: httpx.Limits, **options: Any) -> httpx.AsyncClient:
    """An httpx client whose requests travel over aiohttp (HTTP/1.1, keep-alive)."""
    return HttpxAiohttpClient(timeout=timeout, limits=limits, **options)


def never_sent(error: httpx.HTTPError) -> bool:
    """Whether a request failed before it could reach the server (no connection to send it
    on), so nothing it asked for can have been done. Over aiohttp, httpx's `ConnectTimeout`
    also stands for a connection that dropped after the request went out: the aiohttp
    error it was made from tells the two apart."""
    if not isinstance(error, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)):
        return False
    cause = error.__cause__
    if isinstance(cause, aiohttp.ClientError):  # (httpx's own transport: its class says)
        return isinstance(cause, (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError))
    return True
