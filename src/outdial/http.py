"""The HTTP client the service's outbound requests go through.

httpx is the interface everywhere (adapters, pre-dial checks, call action notices);
underneath, aiohttp carries the requests. (The carrier simulator, a test and benchmark
stand-in, sends its callbacks through aiohttp alone.) httpx's own connection
pool costs 1.3 to 4.7 ms of CPU per request (more with more requests in flight); over the
aiohttp transport a request costs 0.5 to 0.9 ms (docs/benchmarks.md, "HTTP clients").
"""

from __future__ import annotations

from typing import Any

import httpx
from httpx_aiohttp import HttpxAiohttpClient


def client(*, timeout: float, limits: httpx.Limits, **options: Any) -> httpx.AsyncClient:
    """An httpx client whose requests travel over aiohttp (HTTP/1.1, keep-alive)."""
    return HttpxAiohttpClient(timeout=timeout, limits=limits, **options)
