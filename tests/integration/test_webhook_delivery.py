"""Delivering webhooks to a real HTTP receiver: signed as documented, retried with back-off,
given up after the last attempt, and sent again (same event) when the worker that was sending
it is killed mid-delivery.

Each test has a database of its own, so its deliverer sees only its own deliveries.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from fastapi import FastAPI
from tests.conftest import POSTGRES_URL, new_tenant
from tests.dialing import free_port, fresh_database, wait_for
from tests.receiver import Answer, documented_verify, receiving
from tests.support import Tenant, pool_timeout_once

from outdial.app import create_app
from outdial.config import Settings
from outdial.database import write_transaction
from outdial.models import WebhookEndpoint, utcnow
from outdial.webhook import events, repository
from outdial.webhook.delivery import Deliverer, DeliverySettings
from outdial.webhook.repository import INTERRUPTED

BASE_URL = "https://outdial.example"
OUTDIAL = str(Path(sys.executable).parent / "outdial")


@dataclass
class Hooks:
    app: FastAPI
    settings: Settings
    tenant: Tenant

    def deliverer(self, client: httpx.AsyncClient, **overrides: Any) -> Deliverer:
        timings: dict[str, Any] = {
            "timeout": 2.0,
            "lease": timedelta(seconds=5),
            "retry_base": 0.2,
            "retry_max": 5.0,
            "poll_seconds": 0.02,
        }
        settings = DeliverySettings(public_base_url=BASE_URL, **{**timings, **overrides})
        return Deliverer(
            self.app.state.sessionmaker, self.app.state.credential_box, client, settings
        )

    async def register(self, url: str, **fields: Any) -> dict[str, Any]:
        return await self.tenant.ok("POST", "/webhooks", json={"url": url, **fields})

    async def emit(self, type: str = "campaign.started", **data: Any) -> str:
        async with write_transaction(self.app.state.sessionmaker) as session:
            event_id = await events.emit(session, self.tenant.user_id, type, data or {"n": 1})
        assert event_id is not None
        return event_id

    async def log(self, webhook_id: str) -> list[dict[str, Any]]:
        return list(await self.tenant.ok("GET", f"/webhooks/{webhook_id}/deliveries"))

    async def settled(self, webhook_id: str, status: str, timeout: float = 20) -> dict[str, Any]:
        async def check() -> dict[str, Any] | None:
            found = await self.log(webhook_id)
            return found[0] if found and found[0]["status"] == status else None

        return dict(await wait_for(check, timeout=timeout, every=0.05))


@pytest.fixture
async def hooks(backend: str, tmp_path: Path) -> AsyncIterator[Hooks]:
    async with fresh_database(backend, tmp_path, POSTGRES_URL) as url:
        settings = Settings(
            database_url=url,
            data_dir=tmp_path / "data",
            secret_key=Fernet.generate_key().decode(),
            public_base_url=BASE_URL,
            dialer=False,
            webhooks=False,
        )
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://outdial.test"
            ) as http:
                yield Hooks(app, settings, await new_tenant(app, http))


@pytest.fixture
async def outbound() -> AsyncIterator[httpx.AsyncClient]:
    """The deliverers' HTTP client."""
    async with httpx.AsyncClient(follow_redirects=False) as http:
        yield http


def stamp(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def test_a_delivery_is_signed_as_the_docs_say_and_logged(
    hooks: Hooks, outbound: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    verify = documented_verify()
    async with receiving() as receiver:
        hook = await hooks.register(receiver.url)
        campaign = await hooks.tenant.campaign(
            recipients=[{"phone_number": "+14155550101"}], scheduleStartTime="2190-01-01T00:00:00Z"
        )
        await hooks.tenant.ok("POST", f"/campaign/{campaign['id']}/start")
        assert await hooks.deliverer(outbound).deliver_due() == 1
        assert await hooks.deliverer(outbound).deliver_due() == 0  # nothing left to send

    (request,) = receiver.received
    secret = hook["secret"]
    signature = request.headers["x-outdial-signature"]
    assert verify(secret, request.body, signature)
    assert not verify("whsec_someone-else", request.body, signature)
    assert not verify(secret, request.body + b" ", signature)
    assert signature.startswith(f"t={request.headers['x-outdial-timestamp']},v1=")

    body = request.json()
    assert request.method == "POST" and request.path == "/hooks/outdial"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"].startswith("outdial-webhooks/")
    assert request.headers["x-outdial-event-id"] == body["id"]
    assert request.headers["x-outdial-event-type"] == body["type"] == "campaign.started"
    assert request.headers["x-outdial-delivery-attempt"] == "1"
    assert body["data"]["campaign_id"] == campaign["id"] and body["created_at"].endswith("Z")

    (delivery,) = await hooks.log(hook["id"])
    assert delivery["status"] == "succeeded" and delivery["delivered_at"]
    assert delivery["next_attempt_at"] is None and delivery["last_status_code"] == 200
    assert delivery["event"] == body
    (attempt,) = delivery["attempts"]
    assert attempt["attempt"] == 1 and attempt["status_code"] == 200 and attempt["error"] is None
    assert attempt["response_body"] == '{"received": true}' and attempt["duration_ms"] >= 0
    assert secret not in caplog.text


async def test_a_failing_endpoint_is_retried_with_back_off_until_it_answers(
    hooks: Hooks, outbound: httpx.AsyncClient
) -> None:
    base = 0.4
    async with receiving(Answer(500, b"down"), Answer(503, b"busy")) as receiver:
        hook = await hooks.register(receiver.url)
        event_id = await hooks.emit()
        deliverer = hooks.deliverer(outbound, retry_base=base)
        running = asyncio.create_task(deliverer.run())
        try:
            delivery = await hooks.settled(hook["id"], "succeeded")
        finally:
            deliverer.stop()
            await running

    requests = receiver.received
    assert len(requests) == 3
    assert {r.headers["x-outdial-event-id"] for r in requests} == {event_id}
    assert len({r.body for r in requests}) == 1  # the same bytes on every attempt
    assert [r.headers["x-outdial-delivery-attempt"] for r in requests] == ["1", "2", "3"]
    attempts = delivery["attempts"]
    assert [a["status_code"] for a in attempts] == [500, 503, 200]
    assert [a["error"] for a in attempts] == ["HTTP 500", "HTTP 503", None]
    assert [a["response_body"] for a in attempts][:2] == ["down", "busy"]
    # Wait k is drawn from [base·2^(k-1)/2, base·2^(k-1)]: at least 0.2 s, then 0.4 s.
    started = [stamp(a["started_at"]) for a in attempts]
    assert (started[1] - started[0]).total_seconds() >= base / 2
    assert (started[2] - started[1]).total_seconds() >= base
    assert requests[2].at - requests[1].at >= base - 0.05


async def test_a_delivery_fails_for_good_after_its_last_attempt(
    hooks: Hooks, outbound: httpx.AsyncClient
) -> None:
    # (The timeout leaves the prompt 500 of the second attempt time on a busy machine.)
    async with receiving(Answer(hang=True), then=Answer(500)) as receiver:
        hook = await hooks.register(receiver.url)
        await hooks.emit()
        deliverer = hooks.deliverer(outbound, timeout=2.0, max_attempts=2, retry_base=0.05)
        running = asyncio.create_task(deliverer.run())
        try:
            delivery = await hooks.settled(hook["id"], "failed")
            await asyncio.sleep(0.3)  # no third attempt comes
        finally:
            deliverer.stop()
            await running
    assert len(receiver.received) == 2
    first, second = delivery["attempts"]
    assert first["status_code"] is None and first["error"] == "no answer within 2 s"
    assert second["status_code"] == 500 and second["error"] == "HTTP 500"
    assert delivery["last_error"] == "HTTP 500" and delivery["next_attempt_at"] is None
    assert (await hooks.log(hook["id"]))[0]["attempts"] == delivery["attempts"]


async def test_an_unreachable_endpoint_is_a_failed_attempt_not_a_lost_one(
    hooks: Hooks, outbound: httpx.AsyncClient
) -> None:
    hook = await hooks.register(f"http://127.0.0.1:{free_port()}/nobody-listens")
    odd = await hooks.register("http://odd.example/")
    async with write_transaction(hooks.app.state.sessionmaker) as session:
        endpoint = await session.get(WebhookEndpoint, odd["id"])
        assert endpoint is not None
        endpoint.url = "http://xn--a.example/"  # a URL the HTTP client refuses to send to
    await hooks.emit()
    assert await hooks.deliverer(outbound, max_attempts=1).deliver_due() == 2
    (delivery,) = await hooks.log(hook["id"])
    assert delivery["status"] == "failed"
    assert delivery["attempts"][0]["error"].startswith("ConnectError")
    (refused,) = await hooks.log(odd["id"])
    assert refused["status"] == "failed" and refused["attempts"][0]["finished_at"]
    assert refused["attempts"][0]["status_code"] is None and refused["attempts"][0]["error"]


async def test_a_worker_killed_mid_delivery_loses_nothing(
    hooks: Hooks, outbound: httpx.AsyncClient, tmp_path: Path
) -> None:
    """`outdial worker` takes the delivery and is SIGKILLed while the endpoint has not yet
    answered; once its lease has run out, another worker sends the same event again."""
    lease = 2.5
    async with receiving(Answer(hang=True)) as receiver:
        hook = await hooks.register(receiver.url)
        event_id = await hooks.emit("call.ended", call_id="call_x", outcome="completed")
        worker = spawn_worker(hooks.settings, tmp_path, lease=lease, timeout=2)
        try:
            await receiver.wait_for(1, timeout=60)
        finally:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
        (held,) = await hooks.log(hook["id"])
        assert held["status"] == "pending"
        assert [(a["attempt"], a["finished_at"]) for a in held["attempts"]] == [(1, None)]

        deliverer = hooks.deliverer(outbound)
        running = asyncio.create_task(deliverer.run())
        try:
            delivery = await hooks.settled(hook["id"], "succeeded", timeout=30)
        finally:
            deliverer.stop()
            await running

    first, second = receiver.received
    assert first.headers["x-outdial-event-id"] == second.headers["x-outdial-event-id"] == event_id
    assert first.body == second.body
    assert second.headers["x-outdial-delivery-attempt"] == "2"
    interrupted, delivered = delivery["attempts"]
    assert interrupted["attempt"] == 1 and interrupted["error"] == INTERRUPTED
    assert interrupted["status_code"] is None and interrupted["finished_at"]
    assert delivered["attempt"] == 2 and delivered["status_code"] == 200
    waited = stamp(delivered["started_at"]) - stamp(interrupted["started_at"])
    assert waited >= timedelta(seconds=lease)  # not before the killed worker's lease ended


def spawn_worker(
    settings: Settings, tmp_path: Path, *, lease: float, timeout: float
) -> subprocess.Popen[bytes]:
    assert settings.secret_key is not None
    env = {
        **os.environ,
        "OUTDIAL_DATABASE_URL": settings.resolved_database_url,
        "OUTDIAL_DATA_DIR": str(settings.data_dir),
        "OUTDIAL_SECRET_KEY": settings.secret_key.get_secret_value(),
        "OUTDIAL_PUBLIC_BASE_URL": BASE_URL,
        "OUTDIAL_WEBHOOK_LEASE_SECONDS": str(lease),
        "OUTDIAL_WEBHOOK_TIMEOUT_SECONDS": str(timeout),
        "OUTDIAL_WEBHOOK_POLL_SECONDS": "0.05",
    }
    with (tmp_path / "worker.log").open("ab") as log:
        return subprocess.Popen(
            [OUTDIAL, "worker"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


async def test_two_claims_never_take_the_same_delivery(hooks: Hooks, backend: str) -> None:
    """CLAIM raced by two workers: each delivery goes to one of them; a claimed one is not
    due again until its lease ends."""
    await hooks.register(f"http://127.0.0.1:{free_port()}/unused")
    for n in range(6):
        await hooks.emit(n=n)
    sessionmaker = hooks.app.state.sessionmaker
    now = utcnow()
    lease_end = now + timedelta(seconds=60)

    async def claim(token: str) -> set[str]:
        async with write_transaction(sessionmaker) as session:
            taken = await repository.claim_due(session, now, lease_end, token, 4)
        return {item.delivery_id for item in taken}

    if backend == "postgresql":
        # The first claim's transaction is still open (its rows locked) when the second runs.
        async with write_transaction(sessionmaker) as first:
            held = await repository.claim_due(first, now, lease_end, "a" * 32, 4)
            second = await claim("b" * 32)
        first_ids = {item.delivery_id for item in held}
    else:
        first_ids, second = await asyncio.gather(claim("a" * 32), claim("b" * 32))
    assert sorted([len(first_ids), len(second)]) == [2, 4]
    assert not first_ids & second
    assert await claim("c" * 32) == set()
    async with write_transaction(sessionmaker) as session:
        expired = await repository.claim_due(
            session, lease_end + timedelta(seconds=1), lease_end, "d" * 32, 10
        )
    assert {item.delivery_id for item in expired} == first_ids | second
    assert {item.attempt for item in expired} == {2}


async def test_an_answer_holding_a_nul_character_is_recorded_as_delivered(
    hooks: Hooks, outbound: httpx.AsyncClient
) -> None:
    """An endpoint answering 200 with a body that holds U+0000 (a UTF-16 "OK") has its
    event. PostgreSQL refused to store that body, the result went unrecorded, and the event
    was sent again every time its lease ended, forever."""
    async with receiving(then=Answer(200, "OK".encode("utf-16-le"))) as receiver:
        hook = await hooks.register(receiver.url)
        await hooks.emit()
        deliverer = hooks.deliverer(outbound, lease=timedelta(seconds=1))
        running = asyncio.create_task(deliverer.run())
        try:
            await asyncio.sleep(3)  # three leases
        finally:
            deliverer.stop()
            await running
    (delivery,) = await hooks.log(hook["id"])
    assert len(receiver.received) == 1
    assert delivery["status"] == "succeeded"
    assert delivery["attempts"][0]["response_body"] == "O\ufffdK\ufffd"


async def test_a_surprise_in_one_delivery_round_does_not_end_delivery(
    hooks: Hooks, outbound: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A round that fails with something other than a database or network error (the
    connection pool's timeout under load) is logged and tried again; it used to end the
    process's deliveries until a restart."""
    failures = pool_timeout_once(monkeypatch, repository, "any_due")
    async with receiving() as receiver:
        hook = await hooks.register(receiver.url)
        deliverer = hooks.deliverer(outbound)
        running = asyncio.create_task(deliverer.run())
        try:
            await wait_for(lambda: _none_left(failures), timeout=10)
            await hooks.emit()
            await hooks.settled(hook["id"], "succeeded", timeout=10)
        finally:
            deliverer.stop()
            await running


async def _none_left(failures: list[Any]) -> bool:
    return not failures
