"""Pure webhook rules: retry waits, Retry-After, the body as sent, and the signature."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.receiver import documented_verify

from outdial.webhook import events, signing
from outdial.webhook.delivery import retry_after, retry_delay


@given(
    attempt=st.integers(min_value=1, max_value=200),
    base=st.floats(min_value=0.01, max_value=1000),
    cap=st.floats(min_value=0.01, max_value=100_000),
    draw=st.floats(min_value=0, max_value=1),
)
def test_a_retry_waits_between_half_and_all_of_the_capped_doubling(
    attempt: int, base: float, cap: float, draw: float
) -> None:
    nominal = min(cap, base * 2 ** (attempt - 1))
    wait = retry_delay(attempt, base, cap, lambda: draw)
    assert nominal / 2 <= wait <= nominal * (1 + 1e-12)


def test_the_default_schedule_doubles_up_to_its_cap() -> None:
    top = [retry_delay(n, 10, 21_600, lambda: 1.0) for n in range(1, 16)]
    assert top[:4] == [10, 20, 40, 80] and top[-1] == 21_600
    assert [retry_delay(n, 10, 21_600, lambda: 0.0) for n in (1, 2)] == [5, 10]


@pytest.mark.parametrize(
    ("status", "header", "seconds"),
    [
        (429, "30", 30.0),
        (503, "2.5", 2.5),
        (429, "Wed, 21 Oct 2015 07:28:00 GMT", None),
        (500, "30", None),
        (429, None, None),
        (503, "-4", 0.0),
    ],
)
def test_retry_after_is_read_from_429_and_503(
    status: int, header: str | None, seconds: float | None
) -> None:
    headers = {"Retry-After": header} if header is not None else {}
    assert retry_after(httpx.Response(status, headers=headers)) == seconds


def test_api_links_are_made_absolute_in_the_body() -> None:
    created = datetime(2026, 11, 26, 15, 12, 7, tzinfo=UTC)
    data = {"transcript_url": "/calls/call_1", "recording_url": "https://x/y", "note": "/calls"}
    body = events.body_of("evt_1", "call.ended", created, data, "https://outdial.example")
    assert body == {
        "id": "evt_1",
        "type": "call.ended",
        "created_at": "2026-11-26T15:12:07.000000Z",
        "data": {
            "transcript_url": "https://outdial.example/calls/call_1",
            "recording_url": "https://x/y",
            "note": "/calls",
        },
    }
    raw = events.render("evt_1", "call.ended", created, {"name": "Zoë"}, "https://o")
    expected = '{"id":"evt_1","type":"call.ended","created_at":"2026-11-26T15:12:07.000000Z",'
    assert raw == (expected + '"data":{"name":"Zoë"}}').encode()


def test_signed_headers_verify_with_the_documented_recipe() -> None:
    verify = documented_verify()
    secret = signing.new_secret()
    body = b'{"id":"evt_1"}'
    now = int(time.time())
    headers = signing.signed_headers(secret, now, body)
    assert headers["X-Outdial-Timestamp"] == str(now)
    assert verify(secret, body, headers["X-Outdial-Signature"])
    old = signing.signed_headers(secret, now - 600, body)["X-Outdial-Signature"]
    assert not verify(secret, body, old)  # outside the 5-minute tolerance: a replay
    assert not verify(secret, body, "garbage")
    assert secret.startswith("whsec_") and signing.new_secret() != secret
