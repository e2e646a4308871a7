"""The pre-dial check: its configuration (secret shown once, sealed at rest) and the client
the dialer calls, which fails closed against a real HTTP receiver."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from tests.dialing import free_port
from tests.receiver import Answer, documented_verify, receiving
from tests.support import Tenant

from outdial.models import PreDialCheck
from outdial.pre_dial.service import (
    PreDialDecision,
    PreDialRequest,
    PreDialTarget,
    pre_dial_allows,
)

QUESTION = PreDialRequest(
    phone_number="+14155550101",
    campaign_id="cmp_1",
    recipient_id="rcp_7",
    call_id="call_9",
    attempt=2,
    metadata={"name": "Ann"},
)


@pytest.fixture
async def outbound() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as http:
        yield http


async def test_the_check_is_set_read_changed_and_removed(app: FastAPI, tenant: Tenant) -> None:
    missing = await tenant.get("/pre-dial-check")
    assert (missing.status_code, missing.json()) == (404, {"detail": "Pre-dial check not found"})

    created = await tenant.ok("PUT", "/pre-dial-check", json={"url": "https://crm.example/ok"})
    secret = created["secret"]
    assert secret.startswith("whsec_") and created["timeout_seconds"] == 3
    shown = await tenant.ok("GET", "/pre-dial-check")
    assert shown["secret"] is None and shown["url"] == "https://crm.example/ok"
    async with app.state.sessionmaker() as session:
        row = await session.get(PreDialCheck, tenant.user_id)
    assert row is not None and secret.encode() not in row.secret

    changed = await tenant.ok(
        "PUT", "/pre-dial-check", json={"url": "https://crm.example/v2", "timeout_seconds": 1.5}
    )
    assert changed["secret"] is None and changed["timeout_seconds"] == 1.5
    rotated = await tenant.ok(
        "PUT", "/pre-dial-check", json={"url": "https://crm.example/v2", "rotate_secret": True}
    )
    assert rotated["secret"] not in (None, secret)

    assert (await tenant.request("DELETE", "/pre-dial-check")).status_code == 204
    assert (await tenant.get("/pre-dial-check")).status_code == 404
    assert (await tenant.request("DELETE", "/pre-dial-check")).status_code == 404


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"url": "mailto:me@example.com"}, ["body", "url"]),
        ({"url": "https://crm.example", "timeout_seconds": 0.1}, ["body", "timeout_seconds"]),
        ({"url": "https://crm.example", "timeout_seconds": 11}, ["body", "timeout_seconds"]),
        ({"timeout_seconds": 2}, ["body", "url"]),
    ],
)
async def test_a_bad_check_is_a_422(tenant: Tenant, body: dict[str, Any], loc: list[Any]) -> None:
    response = await tenant.request("PUT", "/pre-dial-check", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == loc
    assert (await tenant.get("/pre-dial-check")).status_code == 404


async def test_each_account_has_its_own_check(tenant: Tenant, other_tenant: Tenant) -> None:
    await other_tenant.ok("PUT", "/pre-dial-check", json={"url": "https://crm.example/theirs"})
    assert (await tenant.get("/pre-dial-check")).status_code == 404
    assert (await tenant.request("DELETE", "/pre-dial-check")).status_code == 404
    assert (await other_tenant.ok("GET", "/pre-dial-check"))["url"].endswith("/theirs")


async def test_an_allowing_answer_lets_the_dial_go_and_the_question_is_signed(
    outbound: httpx.AsyncClient,
) -> None:
    async with receiving(Answer.json({"allow": True})) as receiver:
        target = PreDialTarget(receiver.url, 2.0, "whsec_test-secret")
        decision = await pre_dial_allows(outbound, target, QUESTION)
    assert decision == PreDialDecision(True)
    (request,) = receiver.received
    assert documented_verify()(
        "whsec_test-secret", request.body, request.headers["x-outdial-signature"]
    )
    assert request.headers["x-outdial-event-type"] == "pre_dial.check"
    question = request.json()
    assert question["type"] == "pre_dial.check" and question["phone_number"] == "+14155550101"
    assert question["recipient_id"] == "rcp_7" and question["attempt"] == 2
    assert question["metadata"] == {"name": "Ann"} and question["requested_at"].endswith("Z")


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (Answer.json({"allow": False, "reason": "open complaint"}), "pre_dial: open complaint"),
        (Answer.json({"allow": False}), "pre_dial: refused"),
        (Answer.json({"allow": True}, status=500), "pre_dial_check_failed: HTTP 500"),
        (Answer.json({"allow": True}, status=302), "pre_dial_check_failed: HTTP 302"),
        (Answer(body=b"yes"), 'pre_dial_check_failed: the answer is not JSON like {"allow": true}'),
        (
            Answer.json({"allow": "yes"}),
            'pre_dial_check_failed: the answer is not JSON like {"allow": true}',
        ),
        (Answer.json([True]), 'pre_dial_check_failed: the answer is not JSON like {"allow": true}'),
        (Answer(body=b"x" * 70_000), "pre_dial_check_failed: the answer is too long"),
        (Answer(delay=1.0), "pre_dial_check_failed: no answer within 0.3 s"),
        (Answer(hang=True), "pre_dial_check_failed: no answer within 0.3 s"),
    ],
)
async def test_anything_but_an_allow_skips_the_dial(
    outbound: httpx.AsyncClient, answer: Answer, reason: str
) -> None:
    # A short timeout where no answer is the case; a long one where the answer is prompt
    # (a busy machine may take more than 0.3 s to carry it).
    timeout = 0.3 if "no answer" in reason else 5.0
    async with receiving(answer) as receiver:
        decision = await pre_dial_allows(
            outbound, PreDialTarget(receiver.url, timeout, "s"), QUESTION
        )
    assert decision == PreDialDecision(False, reason)


async def test_an_unreachable_check_skips_the_dial(outbound: httpx.AsyncClient) -> None:
    target = PreDialTarget(f"http://127.0.0.1:{free_port()}/gone", 1.0, "s")
    decision = await pre_dial_allows(outbound, target, QUESTION)
    assert decision == PreDialDecision(False, "pre_dial_check_failed: ConnectError")


async def test_the_dialers_checker_asks_only_accounts_that_have_a_check(
    app: FastAPI, tenant: Tenant, other_tenant: Tenant
) -> None:
    checker = app.state.pre_dial
    async with receiving(Answer.json({"allow": False, "reason": "paid already"})) as receiver:
        await tenant.ok("PUT", "/pre-dial-check", json={"url": receiver.url})
        assert await checker.allows(other_tenant.user_id, QUESTION) == PreDialDecision(True)
        assert receiver.received == []
        refused = await checker.allows(tenant.user_id, QUESTION)
    assert refused == PreDialDecision(False, "pre_dial: paid already")
    assert len(receiver.received) == 1
