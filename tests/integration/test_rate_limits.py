"""Rate limits per API key: `X-RateLimit-*` on every authenticated answer, 429 past the limit.

Most tests run on an app of their own whose clock stands still and whose tiers include a
tiny one, so the limit is reached in a few requests and never straddles a minute.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from tests.support import Tenant, database_restart

from outdial.app import create_app
from outdial.auth import service as auth_service
from outdial.auth.rate_limit import rate_limiter_for
from outdial.config import Settings
from outdial.database import read_alone

TIERS = {"development": 100, "production": 1000, "tiny": 3}
MINUTE_START = 60 * 29_000_000
NOW = MINUTE_START + 15.5  # 44.5 s before the window ends
REFUSED = {"detail": "Rate limit exceeded"}
HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Limited:
    """An app with the tiers above, its client and its clock."""

    app: FastAPI
    http: httpx.AsyncClient
    clock: Clock

    async def tenant(self, tier: str | None = "tiny", user_id: str | None = None) -> Tenant:
        async with self.app.state.sessionmaker() as session, session.begin():
            if user_id is None:
                user_id = (await auth_service.create_user(session, "limited")).id
            issued = await auth_service.create_key(session, user_id, tier=tier)
        return Tenant(self.http, user_id, issued.key, issued.id)


@asynccontextmanager
async def an_api(
    settings: Settings, clock: Clock
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """An app with the tiers above counting by `clock`, and its client: one API process."""
    application = create_app(
        settings.model_copy(update={"rate_limit_tiers": TIERS}), run_migrations=False
    )
    async with application.router.lifespan_context(application):
        await application.state.rate_limiter.close()
        limiter = rate_limiter_for(settings.resolved_database_url, TIERS, "production", clock)
        application.state.rate_limiter = limiter
        transport = httpx.ASGITransport(app=application)
        try:
            async with httpx.AsyncClient(
                transport=transport, base_url="http://outdial.test"
            ) as http:
                yield application, http
        finally:
            await limiter.close()


@pytest.fixture
async def limited(settings: Settings) -> AsyncIterator[Limited]:
    clock = Clock(NOW)
    async with an_api(settings, clock) as (application, http):
        yield Limited(application, http, clock)


def quota(response: httpx.Response) -> tuple[int, int, int]:
    limit, remaining, reset = (int(response.headers[name]) for name in HEADERS)
    return limit, remaining, reset


async def test_every_authenticated_answer_carries_the_headers(tenant: Tenant) -> None:
    # These requests count on the real clock: keep them inside one minute (a new minute
    # counts from the top, and its reset is a minute later).
    if time.time() % 60 > 50:
        await asyncio.sleep(60.5 - time.time() % 60)
    assistant = await tenant.assistant()
    answers = [
        await tenant.get("/campaign"),
        await tenant.get("/campaign/cmp_00000000000000000000"),
        await tenant.post("/assistants", json={"name": ""}),
        await tenant.get("/recipient-lists/template"),
        await tenant.request("DELETE", f"/assistants/{assistant['id']}"),
    ]
    assert [a.status_code for a in answers] == [200, 404, 422, 200, 204]
    now = time.time()
    seen = [quota(answer) for answer in answers]
    assert {limit for limit, _, _ in seen} == {1000}  # the default tier, production
    remaining = [left for _, left, _ in seen]
    assert remaining == sorted(remaining, reverse=True) and len(set(remaining)) == len(seen)
    assert all(now < reset <= now + 61 and reset % 60 == 0 for _, _, reset in seen)


async def test_past_the_limit_is_a_429_with_the_headers(limited: Limited) -> None:
    tenant = await limited.tenant()
    allowed = [await tenant.get("/assistants") for _ in range(3)]
    assert [a.status_code for a in allowed] == [200] * 3
    assert [quota(a)[1] for a in allowed] == [2, 1, 0]

    refused = await tenant.post("/assistants", json={"name": "Ava"})
    assert refused.status_code == 429
    assert refused.json() == REFUSED
    assert quota(refused) == (3, 0, MINUTE_START + 60)
    assert refused.headers["retry-after"] == "45"
    # A refused request did nothing; the next minute starts the count again.
    limited.clock.now = MINUTE_START + 60
    again = await tenant.get("/assistants")
    assert again.status_code == 200 and again.json() == []
    assert quota(again) == (3, 2, MINUTE_START + 120)


async def test_api_processes_share_a_keys_count(
    limited: Limited, settings: Settings, backend: str
) -> None:
    """Two apps on one database, as `outdial serve --workers 2` runs them: a key gets its
    limit across both, not twice it, its requests sent to both at once."""
    if backend == "sqlite":
        pytest.skip("one API process on SQLite: the count is in its memory")
    async with an_api(settings, limited.clock) as (_, http):
        tenant = await limited.tenant()  # tiny: 3 a minute
        elsewhere = Tenant(http, tenant.user_id, tenant.key, tenant.key_id)
        answers = await asyncio.gather(
            *[(tenant, elsewhere)[i % 2].get("/assistants") for i in range(12)]
        )
        statuses = sorted(answer.status_code for answer in answers)
        assert statuses == [200] * 3 + [429] * 9
        allowed = [quota(a)[1] for a in answers if a.status_code == 200]
        assert sorted(allowed) == [0, 1, 2]
        # The next minute starts again in both.
        limited.clock.now = MINUTE_START + 60
        assert (await elsewhere.get("/assistants")).status_code == 200
        assert quota(await tenant.get("/assistants"))[:2] == (3, 1)


async def test_a_database_restart_costs_the_count_no_refusal_of_its_own(
    limited: Limited, backend: str, app: FastAPI
) -> None:
    """After a restart the request that finds the app's pooled connection gone is a 503
    (the app's pool then reconnects); the count's own pool finds its connection gone too,
    and tries again on a new one rather than refuse a second request."""
    if backend == "sqlite":
        pytest.skip("SQLite has no connection to lose")
    tenant = await limited.tenant("development")
    assert (await tenant.get("/assistants")).status_code == 200  # both pools hold one
    async with database_restart(limited.app.state.engine):
        statuses = [(await tenant.get("/assistants")).status_code for _ in range(3)]
    await app.state.engine.dispose()  # (the other tests' app lost its connections too)
    assert statuses in ([503, 200, 200], [200, 200, 200])
    # Counted once each, the 503 not at all (its key was never read).
    counted = 1 + statuses.count(200) + 1
    assert quota(await tenant.get("/assistants"))[1] == 100 - counted


async def test_the_count_does_not_wait_for_the_disk(limited: Limited, backend: str) -> None:
    """A count is a commit on every request: it does not wait for the WAL to be flushed
    (what a crash may lose is the last moment's counts). The app's own connections keep
    the server's setting (a test cluster may have it off for all)."""
    if backend == "sqlite":
        pytest.skip("the count is in memory on SQLite")
    setting = text("SELECT setting, source FROM pg_settings WHERE name = 'synchronous_commit'")
    (counting,) = await read_alone(limited.app.state.rate_limiter.sessionmaker, setting)
    (serving,) = await read_alone(limited.app.state.sessionmaker, setting)
    assert (counting.setting, counting.source) == ("off", "client")
    assert serving.source != "client"


async def test_minutes_before_the_last_are_forgotten_beside_the_requests(
    limited: Limited, backend: str
) -> None:
    """Entering a new minute, a process deletes the counts of the minutes before the last,
    in a task of its own: the request that noticed the new minute does not wait for it."""
    if backend == "sqlite":
        pytest.skip("the count is in memory on SQLite")
    limiter = limited.app.state.rate_limiter
    tenant = await limited.tenant("development")
    minutes = text("SELECT minute FROM rate_limit_counts WHERE key_id = :key ORDER BY minute")
    first = int(NOW // 60)
    for minute in range(3):
        limited.clock.now = NOW + 60 * minute
        assert (await tenant.get("/assistants")).status_code == 200
        if limiter._forgetting is not None:
            await limiter._forgetting
        kept = await read_alone(limiter.sessionmaker, minutes, {"key": tenant.key_id})
        assert [row.minute for row in kept] == [
            first + m for m in range(max(0, minute - 1), minute + 1)
        ]
    # The same minute again: nothing more to forget, no task.
    forgetting = limiter._forgetting
    assert (await tenant.get("/assistants")).status_code == 200
    assert limiter._forgetting is forgetting


async def test_each_key_counts_on_its_own(limited: Limited) -> None:
    tenant = await limited.tenant()
    for _ in range(4):
        await tenant.get("/campaign")
    assert (await tenant.get("/campaign")).status_code == 429
    second_key = await limited.tenant(user_id=tenant.user_id)
    other_user = await limited.tenant()
    for other in (second_key, other_user):
        response = await other.get("/campaign")
        assert response.status_code == 200
        assert quota(response)[:2] == (3, 2)


@pytest.mark.parametrize(
    ("tier", "limit"),
    [("development", 100), ("production", 1000), (None, 1000), ("dropped-tier", 1000)],
)
async def test_a_keys_tier_sets_its_limit(limited: Limited, tier: str | None, limit: int) -> None:
    """No tier, or a tier no longer configured: the default tier."""
    tenant = await limited.tenant(tier)
    assert quota(await tenant.get("/campaign"))[:2] == (limit, limit - 1)


async def test_webhooks_health_and_metrics_are_never_limited(limited: Limited) -> None:
    tenant = await limited.tenant()
    for _ in range(3):
        await tenant.get("/campaign")
    assert (await tenant.get("/campaign")).status_code == 429
    webhook = "/telephony/twilio/call_00000000000000000000/secret/status"
    for _ in range(5):
        answers = [
            await limited.http.get("/health"),
            await limited.http.get("/metrics"),
            await limited.http.post(webhook, data={"CallStatus": "completed"}),
            # The credentials of the exhausted key change nothing outside the API.
            await limited.http.get("/health", headers=tenant.headers),
        ]
        for answer in answers:
            assert answer.status_code != 429, answer.text
            assert not any(name in answer.headers for name in HEADERS)
    assert (await tenant.get("/campaign")).status_code == 429


async def test_refused_credentials_count_against_no_key(limited: Limited) -> None:
    tenant = await limited.tenant()
    wrong = {"Authorization": "Bearer sk_live_wrong", "X-User-ID": tenant.user_id}
    for _ in range(5):
        refused = await limited.http.get("/campaign", headers=wrong)
        assert refused.status_code == 401
        assert not any(name in refused.headers for name in HEADERS)
    assert quota(await tenant.get("/campaign"))[:2] == (3, 2)


async def test_an_upload_past_the_limit_is_refused_before_it_is_imported(
    limited: Limited,
) -> None:
    tenant = await limited.tenant()
    for _ in range(3):
        await tenant.get("/recipient-lists")
    files = {"file": ("a.csv", io.BytesIO(b"phone_number\n+14155550100\n"), "text/csv")}
    refused = await tenant.post("/recipient-lists", data={"name": "x"}, files=files)
    assert (refused.status_code, refused.json()) == (429, REFUSED)
    limited.clock.now = MINUTE_START + 60
    assert (await tenant.get("/recipient-lists")).json() == []


def test_the_openapi_documents_the_429(app: FastAPI) -> None:
    schema = app.openapi()
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            if operation.get("security"):
                answer = operation["responses"]["429"]
                assert set(answer["headers"]) == {
                    "X-RateLimit-Limit",
                    "X-RateLimit-Remaining",
                    "X-RateLimit-Reset",
                    "Retry-After",
                }, (method, path)
    assert "429" not in schema["paths"]["/health"]["get"]["responses"]
