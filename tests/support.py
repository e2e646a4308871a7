"""Test helpers: a tenant that speaks the API, and PostgreSQL database management."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

TWILIO_SID = "AC" + "0123456789abcdef" * 2


@dataclass
class Tenant:
    """One user with one API key; its requests carry both auth headers."""

    http: httpx.AsyncClient
    user_id: str
    key: str
    key_id: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}", "X-User-ID": self.user_id}

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return await self.http.request(method, path, headers=self.headers, **kwargs)

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.request("POST", path, **kwargs)

    async def ok(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self.request(method, path, **kwargs)
        assert response.status_code in (200, 204), (response.status_code, response.text)
        return response.json() if response.content else None

    async def assistant(self, **fields: Any) -> dict[str, Any]:
        return await self.ok("POST", "/assistants", json={"name": "Ava", **fields})

    async def phone_number(self, number: str = "+14155550123", **fields: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "phone_number": number,
            "provider": "twilio",
            "account_sid": TWILIO_SID,
            "auth_token": "tok-secret-1",
        }
        if fields.get("provider") == "vobiz":
            body = {
                "phone_number": number,
                "provider": "vobiz",
                "auth_id": "MA_VOBIZ_1",
                "auth_token": "vobiz-secret-1",
            }
        body.update(fields)
        return await self.ok("POST", "/phone-numbers", json=body)

    async def recipient_list(
        self, csv_text: str, name: str = "list", **form: Any
    ) -> dict[str, Any]:
        files = {"file": ("people.csv", io.BytesIO(csv_text.encode()), "text/csv")}
        return await self.ok("POST", "/recipient-lists", data={"name": name, **form}, files=files)

    async def campaign(self, **fields: Any) -> dict[str, Any]:
        if "assistant_id" not in fields:
            fields["assistant_id"] = (await self.assistant())["id"]
        if "phone_number_id" not in fields:
            fields["phone_number_id"] = (await self.phone_number())["id"]
        body = {"name": "Spring renewals", **fields}
        return await self.ok("POST", "/campaign", json=body)


def numbers(count: int, start: int = 0) -> list[str]:
    """`count` distinct valid US numbers (+1 415 XXX YYYY with a valid exchange)."""
    return [phone(start + i) for i in range(count)]


def phone(n: int) -> str:
    return f"+1415{200 + n // 10_000:03d}{n % 10_000:04d}"


def admin_url_database(url: str, database: str) -> str:
    return make_url(url).set(database=database).render_as_string(hide_password=False)


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def create_database(url: str, name: str) -> None:
    connection = await asyncpg.connect(_asyncpg_dsn(url))
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


async def drop_database(url: str, name: str) -> None:
    connection = await asyncpg.connect(_asyncpg_dsn(url))
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


@asynccontextmanager
async def database_restart(engine: AsyncEngine) -> AsyncIterator[None]:
    """What a database restart does to the app's pooled connections: every other connection
    to the database is ended by the server. Afterwards the pool is emptied, so the
    connections the test did not come across are not left for the next tests."""
    connection = await asyncpg.connect(_asyncpg_dsn(engine.url.render_as_string(False)))
    try:
        await connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await connection.close()
    try:
        yield
    finally:
        await engine.dispose()


def pool_timeout_once(monkeypatch: Any, module: Any, name: str) -> list[Exception]:
    """Make the async function `module.name` fail once, as under load a connection pool
    does (`sqlalchemy.exc.TimeoutError`: neither a database nor a network error), then work
    as before. The list it returns is empty once that failure has happened."""
    real = getattr(module, name)
    failures: list[Exception] = [
        sa_exc.TimeoutError("QueuePool limit of size 20 overflow 10 reached")
    ]

    async def failing_once(*args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop()
        return await real(*args, **kwargs)

    monkeypatch.setattr(module, name, failing_once)
    return failures
