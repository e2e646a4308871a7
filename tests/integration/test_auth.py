"""Authentication: both headers, a live key of that very user, or one identical 401.

Keys are stored only as their SHA-256, and the CLI creates and revokes them.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from tests.support import Tenant

from outdial.app import create_app
from outdial.auth import service as auth_service
from outdial.config import Settings
from outdial.models import ApiKey

REFUSED = {"detail": "Invalid authentication credentials"}
OUTDIAL = str(Path(sys.executable).parent / "outdial")


def assert_refused(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.json() == REFUSED
    assert response.headers["www-authenticate"] == "Bearer"


async def test_missing_authorization_is_refused(tenant: Tenant) -> None:
    assert_refused(await tenant.http.get("/campaign", headers={"X-User-ID": tenant.user_id}))


async def test_missing_user_id_is_refused(tenant: Tenant) -> None:
    headers = {"Authorization": f"Bearer {tenant.key}"}
    assert_refused(await tenant.http.get("/campaign", headers=headers))


@pytest.mark.parametrize("scheme", ["Basic", "Token", "bearerx", ""])
async def test_another_scheme_is_refused(tenant: Tenant, scheme: str) -> None:
    headers = {"Authorization": f"{scheme} {tenant.key}".strip(), "X-User-ID": tenant.user_id}
    assert_refused(await tenant.http.get("/campaign", headers=headers))


@pytest.mark.parametrize("key", ["sk_live_unknown", "", "   ", "x" * 5000])
async def test_unknown_key_is_refused(tenant: Tenant, key: str) -> None:
    headers = {"Authorization": f"Bearer {key}", "X-User-ID": tenant.user_id}
    assert_refused(await tenant.http.get("/campaign", headers=headers))


async def test_unknown_user_id_is_refused(tenant: Tenant) -> None:
    headers = {"Authorization": f"Bearer {tenant.key}", "X-User-ID": "user_nobody"}
    assert_refused(await tenant.http.get("/campaign", headers=headers))


async def test_key_of_another_user_is_refused(tenant: Tenant, other_tenant: Tenant) -> None:
    headers = {"Authorization": f"Bearer {other_tenant.key}", "X-User-ID": tenant.user_id}
    assert_refused(await tenant.http.get("/campaign", headers=headers))


async def test_revoked_key_is_refused(app: FastAPI, tenant: Tenant) -> None:
    assert (await tenant.get("/campaign")).status_code == 200
    async with app.state.sessionmaker() as session, session.begin():
        await auth_service.revoke_key(session, tenant.key_id)
    assert_refused(await tenant.get("/campaign"))


async def test_a_second_key_of_the_same_user_works(app: FastAPI, tenant: Tenant) -> None:
    async with app.state.sessionmaker() as session, session.begin():
        issued = await auth_service.create_key(session, tenant.user_id, "second")
    headers = {"Authorization": f"Bearer {issued.key}", "X-User-ID": tenant.user_id}
    assert (await tenant.http.get("/campaign", headers=headers)).status_code == 200


def secured_operations() -> list[tuple[str, str]]:
    schema = create_app(Settings()).openapi()
    return sorted(
        (method.upper(), path)
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        if operation.get("security")
    )


@pytest.mark.parametrize(
    ("method", "path"), secured_operations(), ids=[" ".join(op) for op in secured_operations()]
)
async def test_every_operation_refuses_a_stranger(
    client: httpx.AsyncClient, tenant: Tenant, method: str, path: str
) -> None:
    url = re.sub(r"\{\w+\}", "x_1", path)
    assert_refused(await client.request(method, url))
    wrong = {"Authorization": "Bearer sk_live_wrong", "X-User-ID": tenant.user_id}
    assert_refused(await client.request(method, url, headers=wrong))


def test_the_openapi_requires_both_headers_together() -> None:
    schema = create_app(Settings()).openapi()
    for method, path in secured_operations():
        operation = schema["paths"][path][method.lower()]
        assert operation["security"] == [{"HTTPBearer": [], "APIKeyHeader": []}], path
        assert "401" in operation["responses"], path
    assert len(secured_operations()) >= 30
    assert "security" not in schema["paths"]["/health"]["get"]


async def test_health_and_metrics_need_no_credentials(client: httpx.AsyncClient) -> None:
    health = await client.get("/health")
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    assert (await client.get("/metrics")).status_code == 200


async def test_keys_are_stored_only_as_sha256(app: FastAPI, tenant: Tenant) -> None:
    async with app.state.sessionmaker() as session:
        rows = (await session.execute(select(ApiKey.__table__))).all()
    mine = [row for row in rows if row.id == tenant.key_id]
    assert len(mine) == 1
    assert mine[0].key_hash == hashlib.sha256(tenant.key.encode()).hexdigest()
    for row in rows:
        assert all(tenant.key not in str(value) for value in row), row


def run_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """`outdial ARGS` as a separate process on the test database."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("OUTDIAL_")}
    env["OUTDIAL_DATABASE_URL"] = settings.resolved_database_url
    env["OUTDIAL_DATA_DIR"] = str(settings.data_dir)
    env["COLUMNS"] = "200"
    return subprocess.run(
        [OUTDIAL, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def cli(settings: Settings, *args: str) -> str:
    result = run_cli(settings, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def field(output: str, pattern: str) -> str:
    found = re.search(pattern, output)
    assert found, output
    return found.group(1)


async def test_cli_creates_users_and_keys_and_revokes_keys(
    settings: Settings, client: httpx.AsyncClient
) -> None:
    user_id = field(cli(settings, "users", "create", "carol"), r"(user_\w+)")
    created = cli(settings, "keys", "create", user_id, "--label", "laptop")
    key = field(created, r"api key: (sk_live_\S+)")
    key_id = field(created, r"key id: +(key_\w+)")
    headers = {"Authorization": f"Bearer {key}", "X-User-ID": user_id}
    assert (await client.get("/campaign", headers=headers)).status_code == 200
    assert "live" in cli(settings, "keys", "list", user_id)

    assert key_id in cli(settings, "keys", "revoke", key_id)
    assert_refused(await client.get("/campaign", headers=headers))
    assert "revoked" in cli(settings, "keys", "list", user_id)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("keys", "revoke", "key_unknown"), "API key not found"),
        (("keys", "create", "user_unknown"), "User not found"),
    ],
)
def test_cli_refuses_unknown_ids_in_one_line(
    settings: Settings, args: tuple[str, ...], message: str
) -> None:
    result = run_cli(settings, *args)
    assert result.returncode == 1
    assert message in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


async def test_cli_creates_keys_in_a_rate_limit_tier(
    settings: Settings, client: httpx.AsyncClient
) -> None:
    user_id = field(cli(settings, "users", "create", "dave"), r"(user_\w+)")
    created = cli(settings, "keys", "create", user_id, "--tier", "development")
    key = field(created, r"api key: (sk_live_\S+)")
    headers = {"Authorization": f"Bearer {key}", "X-User-ID": user_id}
    response = await client.get("/campaign", headers=headers)
    assert response.headers["x-ratelimit-limit"] == "100"
    assert "development" in cli(settings, "keys", "list", user_id)


def test_cli_refuses_an_unknown_tier(settings: Settings) -> None:
    result = run_cli(settings, "keys", "create", "user_x", "--tier", "platinum")
    assert result.returncode != 0
    assert "development, production" in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
