"""`Idempotency-Key` on `POST /campaign`, `POST /recipient-lists` and `POST /calls`.

A repeat of a request with its key returns the first response and creates nothing; the key
with another request is a 409; keys belong to one user; a failed request leaves its key
free; keys expire.
"""

from __future__ import annotations

import asyncio
import io
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, update
from tests.dialing import HUMANS_ONLY, Service
from tests.support import Tenant

from outdial.database import write_transaction
from outdial.idempotency import service as idempotency_service
from outdial.models import IdempotencyKey, utcnow

CSV = b"phone_number,name\n+14155550101,Ann\n+14155550102,Bo\n"
KEY = "2f1c9a7e-4b7d-4a8e-9a51-6f0b1d3c2e11"
IN_PROGRESS = {"detail": "A request with this Idempotency-Key is still in progress; retry it later"}


async def send(tenant: Tenant, path: str, key: str = KEY, **kwargs: Any) -> httpx.Response:
    headers = {**tenant.headers, "Idempotency-Key": key}
    return await tenant.http.post(path, headers=headers, **kwargs)


async def campaign_body(tenant: Tenant) -> dict[str, Any]:
    return {
        "name": "Spring renewals",
        "assistant_id": (await tenant.assistant())["id"],
        "phone_number_id": (await tenant.phone_number())["id"],
        "recipients": [{"phone_number": "+14155550100", "metadata": {"name": "Ann"}}],
    }


def upload(content: bytes = CSV, name: str = "renewals") -> dict[str, Any]:
    return {
        "data": {"name": name},
        "files": {"file": ("people.csv", io.BytesIO(content), "text/csv")},
    }


async def count(tenant: Tenant, path: str) -> int:
    return len(await tenant.ok("GET", path))


def assert_reused(response: httpx.Response) -> None:
    assert response.status_code == 409, response.text
    assert "already used for a different request" in response.json()["detail"]


async def test_a_repeated_campaign_create_returns_the_first_response(tenant: Tenant) -> None:
    body = await campaign_body(tenant)
    first = await send(tenant, "/campaign", json=body)
    again = await send(tenant, "/campaign", json=body)
    assert first.status_code == again.status_code == 200
    assert again.content == first.content
    assert again.json() == first.json() and first.json()["name"] == "Spring renewals"
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert await count(tenant, "/campaign") == 1


async def test_the_key_with_another_body_is_a_409(tenant: Tenant) -> None:
    body = await campaign_body(tenant)
    assert (await send(tenant, "/campaign", json=body)).status_code == 200
    assert_reused(await send(tenant, "/campaign", json={**body, "name": "Autumn"}))
    assert_reused(await send(tenant, "/recipient-lists", **upload()))
    assert await count(tenant, "/campaign") == 1
    assert await count(tenant, "/recipient-lists") == 0


async def test_keys_belong_to_their_user(tenant: Tenant, other_tenant: Tenant) -> None:
    body = await campaign_body(tenant)
    mine = await send(tenant, "/campaign", json=body)
    theirs = await send(other_tenant, "/campaign", json=await campaign_body(other_tenant))
    assert mine.status_code == theirs.status_code == 200
    assert mine.json()["id"] != theirs.json()["id"]
    assert "idempotent-replayed" not in theirs.headers
    assert (await send(tenant, "/campaign", json=body)).content == mine.content
    assert [c["id"] for c in await tenant.ok("GET", "/campaign")] == [mine.json()["id"]]
    assert [c["id"] for c in await other_tenant.ok("GET", "/campaign")] == [theirs.json()["id"]]


async def test_concurrent_repeats_create_once(tenant: Tenant) -> None:
    body = await campaign_body(tenant)
    answers = await asyncio.gather(*(send(tenant, "/campaign", json=body) for _ in range(6)))
    assert [a.status_code for a in answers] == [200] * 6
    assert len({a.content for a in answers}) == 1
    assert sum("idempotent-replayed" in a.headers for a in answers) == 5
    assert await count(tenant, "/campaign") == 1


async def test_a_repeated_upload_returns_the_first_list(tenant: Tenant) -> None:
    first = await send(tenant, "/recipient-lists", **upload())
    assert first.status_code == 200, first.text
    assert first.json()["last_import"]["imported"] == 2
    # httpx draws a new multipart boundary for every request: the bytes differ, the form not.
    again = await send(tenant, "/recipient-lists", **upload())
    assert (again.status_code, again.content) == (200, first.content)
    assert_reused(await send(tenant, "/recipient-lists", **upload(CSV + b"+14155550103,Cy\n")))
    assert_reused(await send(tenant, "/recipient-lists", **upload(name="other")))
    assert await count(tenant, "/recipient-lists") == 1


async def test_concurrent_uploads_create_one_list(tenant: Tenant) -> None:
    answers = await asyncio.gather(
        *(send(tenant, "/recipient-lists", **upload()) for _ in range(4))
    )
    assert [a.status_code for a in answers] == [200] * 4
    assert len({a.content for a in answers}) == 1
    assert await count(tenant, "/recipient-lists") == 1


async def test_a_failed_request_leaves_its_key_free(tenant: Tenant) -> None:
    body = await campaign_body(tenant)
    unknown = {**body, "assistant_id": "asst_00000000000000000000"}
    assert (await send(tenant, "/campaign", json=unknown)).status_code == 404
    assert (await send(tenant, "/campaign", json={**body, "max_concurrency": 0})).status_code == 422
    created = await send(tenant, "/campaign", json=body)
    assert created.status_code == 200 and "idempotent-replayed" not in created.headers
    assert (await send(tenant, "/campaign", json=body)).headers["idempotent-replayed"] == "true"
    assert await count(tenant, "/campaign") == 1


@pytest.mark.parametrize("key", ["k" * 256, "", "caf\u00e9", "line\x7fbreak"])
async def test_a_key_that_is_too_long_or_not_printable_ascii_is_a_422(
    tenant: Tenant, key: str
) -> None:
    headers = {**tenant.headers, "Idempotency-Key": key.encode("latin-1")}
    response = await tenant.http.post("/recipient-lists", headers=headers, **upload())
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]
    assert await count(tenant, "/recipient-lists") == 0


async def test_the_longest_key_is_accepted(tenant: Tenant) -> None:
    key = "~ " * 127 + "k"  # 255 printable characters
    assert (await send(tenant, "/recipient-lists", key=key, **upload())).status_code == 200
    again = await send(tenant, "/recipient-lists", key=key, **upload())
    assert again.headers["idempotent-replayed"] == "true"


async def test_a_key_whose_first_request_is_running_is_a_409(app: FastAPI, tenant: Tenant) -> None:
    async with write_transaction(app.state.sessionmaker) as session:
        session.add(IdempotencyKey(user_id=tenant.user_id, key=KEY, fingerprint="0" * 64))
    response = await send(tenant, "/campaign", json=await campaign_body(tenant))
    assert (response.status_code, response.json()) == (409, IN_PROGRESS)
    assert await count(tenant, "/campaign") == 0


async def age(app: FastAPI, tenant: Tenant, key: str, hours: float) -> None:
    async with write_transaction(app.state.sessionmaker) as session:
        await session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.user_id == tenant.user_id, IdempotencyKey.key == key)
            .values(created_at=utcnow() - timedelta(hours=hours))
        )


async def test_an_expired_key_counts_as_new(app: FastAPI, tenant: Tenant) -> None:
    body = await campaign_body(tenant)
    first = await send(tenant, "/campaign", json=body)
    await age(app, tenant, KEY, hours=23.9)
    assert (await send(tenant, "/campaign", json=body)).content == first.content
    await age(app, tenant, KEY, hours=24.1)
    renamed = await send(tenant, "/campaign", json={**body, "name": "Autumn"})
    assert renamed.status_code == 200 and renamed.json()["name"] == "Autumn"
    assert (
        await send(tenant, "/campaign", json={**body, "name": "Autumn"})
    ).content == renamed.content
    assert await count(tenant, "/campaign") == 2


async def test_the_purge_deletes_only_expired_keys(app: FastAPI, tenant: Tenant) -> None:
    for key in ("old", "new"):
        assert (
            await send(tenant, "/recipient-lists", key=key, **upload(name=key))
        ).status_code == 200
    await age(app, tenant, "old", hours=25)
    async with write_transaction(app.state.sessionmaker) as session:
        assert await idempotency_service.purge_expired(session, timedelta(hours=24)) >= 1
    async with app.state.sessionmaker() as session:
        kept = await session.scalars(
            select(IdempotencyKey.key).where(IdempotencyKey.user_id == tenant.user_id)
        )
        assert set(kept) == {"new"}


def test_the_openapi_shows_the_header_on_the_three_creates(app: FastAPI) -> None:
    with_key = {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method, operation in operations.items()
        if any(p["name"] == "Idempotency-Key" for p in operation.get("parameters", []))
    }
    assert with_key == {("POST", "/campaign"), ("POST", "/recipient-lists"), ("POST", "/calls")}


async def place(tenant: Tenant, body: dict[str, Any], key: str) -> httpx.Response:
    return await send(tenant, "/calls", key=key, json=body)


async def test_a_retried_call_is_placed_once(service: Service) -> None:
    await service.scenario(**HUMANS_ONLY, ring_seconds=[0.05, 0.1], talk_seconds=[0.1, 0.2])
    tenant = await service.tenant()
    assistant = await tenant.assistant()
    number = await tenant.phone_number(assistant_id=assistant["id"])
    body = {"phone_number_id": number["id"], "to_number": "+14155550100"}

    first = await place(tenant, body, "call-1")
    assert first.status_code == 200, first.text
    assert first.json()["provider_call_sid"]
    again = await place(tenant, body, "call-1")
    assert (again.status_code, again.content) == (200, first.content)
    assert_reused(await place(tenant, {**body, "label": "vip"}, "call-1"))

    # Two at once: one dials; the other waits for the claim, then finds it taken.
    both = await asyncio.gather(
        *(place(tenant, {**body, "to_number": "+14155550101"}, "call-2") for _ in range(2))
    )
    statuses = sorted(answer.status_code for answer in both)
    assert statuses in ([200, 200], [200, 409]), [a.text for a in both]
    if statuses == [200, 409]:
        assert IN_PROGRESS in [a.json() for a in both]
    assert len(await tenant.ok("GET", "/calls")) == 2
    assert (await service.observed())["created"] == 2
