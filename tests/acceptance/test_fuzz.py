"""Schemathesis over the whole OpenAPI against a real `outdial serve`: no input yields a 5xx.

The server runs as a subprocess on a fresh database (SQLite, then PostgreSQL). One tenant owns
an assistant, a phone number, a recipient list, a campaign and a call (and spares of each for
DELETE); `fuzz_hooks` sends every other request to those ids, and every request carries the
tenant's credentials. Responses must also match the OpenAPI (statuses, media types, schemas)
and refuse missing credentials. OUTDIAL_FUZZ_EXAMPLES and OUTDIAL_FUZZ_SEED tune a run.

Below the fuzz run: regressions for inputs that once broke the server.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import io
import json
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from cryptography.fernet import Fernet

from outdial.auth import service as auth_service
from outdial.cli.runtime import transaction
from outdial.config import Settings
from outdial.errors import ErrorResponse
from outdial.ids import new_id
from outdial.models import Call
from tests.support import (
    TWILIO_SID,
    Tenant,
    admin_url_database,
    create_database,
    drop_database,
)

MAX_EXAMPLES = int(os.environ.get("OUTDIAL_FUZZ_EXAMPLES", "30"))
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
    "ignored_auth",
    "missing_required_header",
    "unsupported_method",
]
T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]
LISTENING = re.compile(r"Uvicorn running on (http://127\.0\.0\.1:\d+)")


@dataclass
class LiveServer:
    base_url: str
    headers: dict[str, str]
    ids: dict[str, str]
    spare_ids: dict[str, str]
    log: Path

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-5_000:]


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion on its own loop, away from the tests' loop."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


async def issue_key(settings: Settings) -> tuple[str, str]:
    async with transaction(settings) as session:
        user = await auth_service.create_user(session, "fuzz")
        issued = await auth_service.create_key(session, user.id)
    return user.id, issued.key


async def add_call(settings: Settings, user_id: str, campaign_id: str) -> str:
    async with transaction(settings) as session:
        call = Call(
            id=new_id("call"),
            user_id=user_id,
            campaign_id=campaign_id,
            provider="twilio",
            to_number="+14155550100",
            status="completed",
        )
        session.add(call)
    return call.id


def wait_for_address(process: subprocess.Popen[bytes], log: Path) -> str:
    """The base URL uvicorn reports once it listens (it picks a free port: `--port 0`)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = LISTENING.search(log.read_text(errors="replace"))
        if found:
            return found.group(1)
        if process.poll() is not None:
            break
        time.sleep(0.05)
    pytest.fail(f"outdial serve did not start:\n{log.read_text(errors='replace')[-4000:]}")


def seed_resources(http: httpx.Client, prefix: str) -> dict[str, str]:
    """One resource of each kind, owned by the fuzz tenant; returns path-parameter ids."""

    def ok(method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = http.request(method, path, **kwargs)
        assert response.status_code == 200, response.text
        return dict(response.json())

    assistant = ok("POST", "/assistants", json={"name": f"{prefix} Ava"})
    number = ok(
        "POST",
        "/phone-numbers",
        json={
            "phone_number": "+14155550180" if prefix == "main" else "+14155550181",
            "account_sid": TWILIO_SID,
            "auth_token": "fuzz-token",
        },
    )
    csv = io.BytesIO(b"phone_number,name\n+14155550101,Ann\n+14155550102,Bo\n")
    listing = ok("POST", "/recipient-lists", data={"name": prefix}, files={"file": ("a.csv", csv)})
    campaign = ok(
        "POST",
        "/campaign",
        json={
            "name": prefix,
            "assistant_id": assistant["id"],
            "phone_number_id": number["id"],
            "recipient_list_id": listing["id"],
            "recipients": [{"phone_number": "+14155550103", "metadata": {"name": "Cy"}}],
        },
    )
    chat = ok("POST", "/chat", json={"assistant_id": assistant["id"], "input": "hello"})
    return {
        "assistant_id": assistant["id"],
        "phone_number_id": number["id"],
        "recipient_list_id": listing["id"],
        "campaign_id": campaign["id"],
        "session_id": chat["session_id"],
    }


@pytest.fixture(scope="module")
def fresh_database_url(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A database of its own, on the backend this round of tests runs on."""
    if database_url.startswith("sqlite"):
        yield f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('fuzz') / 'outdial.db'}"
        return
    admin = os.environ["OUTDIAL_TEST_POSTGRES_URL"]
    name = f"outdial_fuzz_{secrets.token_hex(4)}"
    run_async(create_database(admin, name))
    yield admin_url_database(admin, name)
    run_async(drop_database(admin, name))


def start_server(settings: Settings) -> tuple[subprocess.Popen[bytes], str, Path]:
    """`outdial serve` on `settings`' database, on a port it picks; process, URL and log."""
    env = {
        **os.environ,
        "OUTDIAL_DATABASE_URL": settings.resolved_database_url,
        "OUTDIAL_DATA_DIR": str(settings.data_dir),
        "OUTDIAL_SECRET_KEY": settings.secret_key.get_secret_value(),  # type: ignore[union-attr]
        "OUTDIAL_LOG_LEVEL": "info",
        # One key sends every request of the run: a 429 would stand in for the real answer.
        "OUTDIAL_RATE_LIMIT_TIERS": json.dumps({"development": 100, "production": 1_000_000}),
    }
    log = settings.data_dir / "server.log"
    command = [str(Path(sys.executable).parent / "outdial"), "serve", "--no-local-key"]
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*command, "--port", "0"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        return process, wait_for_address(process, log), log
    except BaseException:
        process.terminate()
        raise


@pytest.fixture(scope="module")
def live_server(
    fresh_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    settings = Settings(
        database_url=fresh_database_url,
        data_dir=tmp_path_factory.mktemp("fuzz-data"),
        secret_key=Fernet.generate_key().decode(),
    )
    user_id, key = run_async(issue_key(settings))
    headers = {"Authorization": f"Bearer {key}", "X-User-ID": user_id}
    process, base_url, log = start_server(settings)
    try:
        with httpx.Client(base_url=base_url, headers=headers, timeout=30) as http:
            ids = seed_resources(http, "main")
            spare_ids = seed_resources(http, "spare")
        ids["call_id"] = run_async(add_call(settings, user_id, ids["campaign_id"]))
        yield LiveServer(base_url, headers, ids, spare_ids, log)
    finally:
        process.terminate()
        process.wait(timeout=10)


def run_schemathesis(server: LiveServer, report_dir: Path) -> subprocess.CompletedProcess[str]:
    ids = {"main": server.ids, "spare": server.spare_ids}
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.acceptance.fuzz_hooks",
        "OUTDIAL_FUZZ_IDS": json.dumps(ids),
        "PYTHONPATH": str(ROOT),
    }
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        "run",
        f"{server.base_url}/openapi.json",
        "--checks",
        ",".join(CHECKS),
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--workers",
        "1",
        "--generation-database",
        "none",
        "--request-timeout",
        "30",
        "--report-dir",
        str(report_dir),
        "--report",
        "har",
        "--no-color",
    ]
    if seed := os.environ.get("OUTDIAL_FUZZ_SEED"):
        command += ["--seed", seed]
    for name, value in server.headers.items():
        command += ["--header", f"{name}: {value}"]
    return subprocess.run(
        command, env=env, cwd=report_dir, capture_output=True, text=True, timeout=600, check=False
    )


def test_no_input_yields_a_server_error(live_server: LiveServer, tmp_path: Path) -> None:
    result = run_schemathesis(live_server, tmp_path)
    report = result.stdout[-20_000:] + result.stderr[-5_000:]
    details = f"every request sent: {tmp_path}/*.json (HAR)\n--- server log ---"
    assert result.returncode == 0, f"{report}\n{details}\n{live_server.log_tail()}"


@pytest.mark.parametrize(
    "template", ["{{ 'x' * 10**10 }}", "{{ 10**10 * ['x'] }}", "{{ 7 ** 99999999 }}"]
)
async def test_a_template_cannot_build_huge_values(tenant: Tenant, template: str) -> None:
    """These once held the server for minutes and gigabytes (Jinja folds constants at compile
    time); now they are a 422 naming the template, at once."""
    body = {
        "name": "Huge",
        "assistant_id": (await tenant.assistant())["id"],
        "phone_number_id": (await tenant.phone_number())["id"],
        "opening_message_template": template,
        "recipients": [{"phone_number": "+14155550100"}],
    }
    started = time.monotonic()
    response = await tenant.post("/campaign", json=body)
    assert response.status_code == 422, response.text
    assert time.monotonic() - started < 5
    assert (await tenant.get("/campaign")).json() == []


def test_an_error_body_always_encodes() -> None:
    """Text a client sent can be echoed in an error (a loc); a lone surrogate must not make
    the error itself a 500."""
    body = ErrorResponse({"detail": [{"loc": ["body", "\ud800"], "msg": "x"}]}).body
    assert json.loads(body)["detail"][0]["loc"][0] == "body"


@pytest.mark.parametrize(
    "path",
    [
        "/telephony/twilio/call_%00/secret/status",
        "/telephony/vobiz/call_%00/secret/answer",
        "/telephony/twilio/call_%ED%A0%80/secret/status",
        "/telephony/twilio/call_00000000000000000000/%00/status",
        "/telephony/vobiz/" + "c" * 300 + "/secret/hangup",
    ],
)
async def test_webhooks_with_odd_ids_are_refused_not_a_server_error(
    client: httpx.AsyncClient, path: str
) -> None:
    """Webhooks are not in the OpenAPI, so the fuzz run never reaches them; a NUL in the call
    id once reached PostgreSQL and answered 500."""
    response = await client.post(path, data={"CallStatus": "completed"})
    assert 400 <= response.status_code < 500, response.text
