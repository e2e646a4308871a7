"""A real outdial server on a free port, with its dialer and the built-in carrier simulator.

The simulator calls the server's webhooks over real HTTP, so the adapters, signatures,
callbacks and the dialer run exactly as in production. Each server gets its own database,
so no other test's campaigns are dialed.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from cryptography.fernet import Fernet
from fastapi import FastAPI

from outdial import websocket
from outdial.app import create_app
from outdial.auth import service as auth_service
from outdial.config import Settings
from tests.support import Tenant, admin_url_database, create_database, drop_database

FAST = {"ring_seconds": [0.05, 0.2], "talk_seconds": [0.1, 0.4]}
HUMANS_ONLY = {"human": 1, "machine": 0, "no_answer": 0, "busy": 0, "failed": 0}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Service:
    app: FastAPI
    base_url: str
    http: httpx.AsyncClient

    async def tenant(self, name: str = "dialer") -> Tenant:
        async with self.app.state.sessionmaker() as session, session.begin():
            user = await auth_service.create_user(session, name)
            issued = await auth_service.create_key(session, user.id)
        return Tenant(self.http, user.id, issued.key, issued.id)

    async def scenario(self, **fields: Any) -> None:
        response = await self.http.put("/_simulator/_sim/scenario", json={**FAST, **fields})
        response.raise_for_status()

    async def observed(self) -> dict[str, Any]:
        return dict((await self.http.get("/_simulator/_sim/stats")).json())


@contextlib.asynccontextmanager
async def fresh_database(backend: str, tmp: Path, postgres_url: str | None) -> AsyncIterator[str]:
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp / 'dialer.db'}"
        return
    assert postgres_url
    name = f"outdial_dialer_{secrets.token_hex(4)}"
    await create_database(postgres_url, name)
    try:
        yield admin_url_database(postgres_url, name)
    finally:
        await drop_database(postgres_url, name)


@contextlib.asynccontextmanager
async def running_service(
    database_url: str, data_dir: Path, **settings: Any
) -> AsyncIterator[Service]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = Settings(
        database_url=database_url,
        data_dir=data_dir,
        host="127.0.0.1",
        port=port,
        secret_key=settings.pop("secret_key", None) or Fernet.generate_key().decode(),
        dialer=True,
        **{"dialer_silence_seconds": 2, "dialer_reap_seconds": 0.5, **settings},
    )
    app = create_app(config)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="on",
            ws=websocket.PATH,  # as `outdial serve` on this (the standard) event loop
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            yield Service(app, base, http)
    finally:
        server.should_exit = True
        await task


async def wait_for(check: Any, timeout: float = 30.0, every: float = 0.1) -> Any:
    """Poll an async predicate until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last: {result!r})")
        await asyncio.sleep(every)


async def campaign_when(
    tenant: Any, campaign_id: str, condition: Any, timeout: float = 30.0
) -> Any:
    """The campaign as soon as `condition(campaign)` holds."""

    async def check() -> Any:
        current = await tenant.ok("GET", f"/campaign/{campaign_id}")
        return current if condition(current) else None

    return await wait_for(check, timeout=timeout)
