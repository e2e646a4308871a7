"""Shared fixtures: the app on SQLite and on PostgreSQL, and a fresh tenant per test.

PostgreSQL runs when OUTDIAL_TEST_POSTGRES_URL names a server we may create databases on
(`scripts/test` starts a throwaway cluster and sets it). With OUTDIAL_REQUIRE_POSTGRES=1 a
missing server is an error, not a skip.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from fastapi import FastAPI
from hypothesis import settings as hypothesis_settings

from outdial.app import create_app
from outdial.auth import service as auth_service
from outdial.config import Settings
from tests.support import Tenant, admin_url_database, create_database, drop_database

POSTGRES_URL = os.environ.get("OUTDIAL_TEST_POSTGRES_URL")
REQUIRE_POSTGRES = os.environ.get("OUTDIAL_REQUIRE_POSTGRES") == "1"

# No per-example deadline: on a busy machine one example can wait a quarter of a second for
# the CPU, and a property is about what holds, not how fast (benchmarks measure that).
hypothesis_settings.register_profile("outdial", deadline=None)
hypothesis_settings.load_profile("outdial")


def _backends() -> list[Any]:
    marks = []
    if not POSTGRES_URL and not REQUIRE_POSTGRES:
        marks = [pytest.mark.skip(reason="OUTDIAL_TEST_POSTGRES_URL is not set")]
    return ["sqlite", pytest.param("postgresql", marks=marks)]


@pytest.fixture(scope="session", params=_backends())
async def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('sqlite') / 'outdial.db'}"
        return
    if not POSTGRES_URL:
        pytest.fail("OUTDIAL_REQUIRE_POSTGRES=1 but OUTDIAL_TEST_POSTGRES_URL is not set")
    name = f"outdial_test_{secrets.token_hex(4)}"
    await create_database(POSTGRES_URL, name)
    yield admin_url_database(POSTGRES_URL, name)
    await drop_database(POSTGRES_URL, name)


@pytest.fixture(scope="session")
def settings(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        database_url=database_url,
        data_dir=tmp_path_factory.mktemp("data"),
        secret_key=Fernet.generate_key().decode(),
        max_upload_bytes=2 * 1024 * 1024,
        dialer=False,
        webhooks=False,  # webhook tests run their own deliverer, with their own timings
    )


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
def backend(database_url: str) -> str:
    return "postgresql" if database_url.startswith("postgresql") else "sqlite"


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=True)
    async with httpx.AsyncClient(transport=transport, base_url="http://outdial.test") as http:
        yield http


async def new_tenant(app: FastAPI, client: httpx.AsyncClient, name: str = "tenant") -> Tenant:
    async with app.state.sessionmaker() as session, session.begin():
        user = await auth_service.create_user(session, name)
        issued = await auth_service.create_key(session, user.id)
    return Tenant(client, user.id, issued.key, issued.id)


@pytest.fixture
async def tenant(app: FastAPI, client: httpx.AsyncClient) -> Tenant:
    return await new_tenant(app, client, "alice")


@pytest.fixture
async def other_tenant(app: FastAPI, client: httpx.AsyncClient) -> Tenant:
    return await new_tenant(app, client, "mallory")


@pytest.fixture
def data_dir(settings: Settings) -> Path:
    return settings.data_dir
