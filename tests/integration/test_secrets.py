"""Secrets: provider credentials go in and never come out (responses, 422s, logs), and are
encrypted at rest; API keys are never logged."""

from __future__ import annotations

import logging
import secrets
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy import text as sql
from tests.support import Tenant

from outdial.config import Settings
from outdial.models import Base, PhoneNumber


def twilio_secrets() -> dict[str, str]:
    return {
        "account_sid": "AC" + secrets.token_hex(16),
        "auth_token": "tok-" + secrets.token_hex(12),
    }


def vobiz_secrets() -> dict[str, str]:
    return {"auth_id": "MA" + secrets.token_hex(8), "auth_token": "vtok-" + secrets.token_hex(12)}


def assert_hidden(values: dict[str, str], *texts: str) -> None:
    for text in texts:
        for name, value in values.items():
            assert value not in text, f"{name} leaked: {text[:500]}"


async def exercise_phone_numbers(tenant: Tenant, given: dict[str, str]) -> list[httpx.Response]:
    """Create, read, list, rotate and attach numbers; every response the API gave."""
    responses = []
    body = {"phone_number": "+14155550123", "provider": "twilio", **given}
    created = await tenant.post("/phone-numbers", json=body)
    assert created.status_code == 200, created.text
    number_id = created.json()["id"]
    rotated = {"auth_token": "tok-" + secrets.token_hex(12)}
    given["rotated_auth_token"] = rotated["auth_token"]
    responses += [
        created,
        await tenant.get(f"/phone-numbers/{number_id}"),
        await tenant.get("/phone-numbers"),
        await tenant.request("PATCH", f"/phone-numbers/{number_id}", json=rotated),
        await tenant.request("PATCH", f"/phone-numbers/{number_id}", json={"label": "main"}),
    ]
    campaign = await tenant.campaign(phone_number_id=number_id)
    responses += [await tenant.get(f"/campaign/{campaign['id']}"), await tenant.get("/campaign")]
    return responses


def bad_bodies(given: dict[str, str]) -> list[Any]:
    """Invalid phone-number bodies that carry a credential where a 422 could echo it."""
    token = given["auth_token"]
    base = {"phone_number": "+14155550123", "account_sid": given["account_sid"]}
    return [
        {**base, "auth_token": token + "x" * 300},  # too long
        {**base, "auth_token": {"value": token}},  # not a string
        {**base, "auth_tokn": token},  # misspelt: an unknown field
        {**base, "auth_token": token, "provider": "nexmo"},  # another field is wrong
        {**base, "auth_token": token + "\x00"},  # not storable
        [token],  # not an object
        token,
    ]


async def test_credentials_never_appear_in_responses(tenant: Tenant) -> None:
    given = twilio_secrets()
    responses = await exercise_phone_numbers(tenant, given)
    for response in responses:
        assert response.status_code == 200, response.text
    assert_hidden(given, *(response.text for response in responses))


async def test_vobiz_credentials_never_appear_in_responses(tenant: Tenant) -> None:
    given = vobiz_secrets()
    body = {"phone_number": "+14155550123", "provider": "vobiz", **given}
    created = await tenant.post("/phone-numbers", json=body)
    assert created.status_code == 200, created.text
    shown = await tenant.get(f"/phone-numbers/{created.json()['id']}")
    assert_hidden(given, created.text, shown.text)


@pytest.mark.parametrize("case", range(7))
async def test_a_422_never_echoes_a_credential(tenant: Tenant, case: int) -> None:
    given = twilio_secrets()
    body = bad_bodies(given)[case]
    response = await tenant.post("/phone-numbers", json=body)
    assert response.status_code == 422, response.text
    assert_hidden(given, response.text)
    for problem in response.json()["detail"]:
        assert problem.keys() == {"loc", "msg", "type"}
        assert problem["loc"][0] == "body"


async def test_a_422_on_rotation_never_echoes_a_credential(tenant: Tenant) -> None:
    number = await tenant.phone_number()
    token = "tok-" + secrets.token_hex(12)
    for body in ({"auth_token": token * 30}, {"auth_token": [token]}, {"token": token}):
        response = await tenant.request("PATCH", f"/phone-numbers/{number['id']}", json=body)
        assert response.status_code == 422, response.text
        assert token not in response.text


async def test_credentials_and_api_keys_never_reach_the_logs(
    tenant: Tenant, caplog: pytest.LogCaptureFixture
) -> None:
    given = twilio_secrets()
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="sqlalchemy.engine")  # statements, parameters, rows
    await exercise_phone_numbers(tenant, given)
    for body in bad_bodies(given):
        assert (await tenant.post("/phone-numbers", json=body)).status_code == 422
    assert caplog.records, "nothing was logged: the check would prove nothing"
    assert_hidden({**given, "api key": tenant.key}, caplog.text)
    assert_hidden({**given, "api key": tenant.key}, *(repr(r.args) for r in caplog.records))


async def stored_credentials(app: FastAPI, number_id: str) -> bytes:
    async with app.state.sessionmaker() as session:
        query = select(PhoneNumber.__table__.c.credentials).where(PhoneNumber.id == number_id)
        return bytes((await session.execute(query)).scalar_one())


async def test_credentials_are_encrypted_at_rest(app: FastAPI, tenant: Tenant) -> None:
    given = twilio_secrets()
    number = await tenant.phone_number(**given)
    stored = await stored_credentials(app, number["id"])
    for value in given.values():
        assert value.encode() not in stored
    assert app.state.credential_box.open(stored) == given

    rotated = {"auth_token": "tok-" + secrets.token_hex(12)}
    await tenant.ok("PATCH", f"/phone-numbers/{number['id']}", json=rotated)
    stored = await stored_credentials(app, number["id"])
    assert rotated["auth_token"].encode() not in stored
    assert app.state.credential_box.open(stored) == {**given, **rotated}


async def test_no_database_content_holds_a_credential(
    app: FastAPI, tenant: Tenant, settings: Settings, backend: str
) -> None:
    """SQLite: the database files byte for byte. PostgreSQL: every row of every table as text
    (the server's files are not ours to read)."""
    given = twilio_secrets()
    await tenant.phone_number(**given)
    if backend == "sqlite":
        database = Path(settings.resolved_database_url.split("///", 1)[1])
        contents = [path.read_bytes() for path in database.parent.glob(database.name + "*")]
    else:
        async with app.state.sessionmaker() as session:
            contents = [
                "\n".join(
                    (await session.scalars(sql(f"SELECT t::text FROM {table} t"))).all()
                ).encode()
                for table in Base.metadata.tables
            ]
    assert contents
    for content in contents:
        for value in given.values():
            assert value.encode() not in content


def test_settings_never_show_the_secret_key() -> None:
    settings = Settings(secret_key="fernet-key-" + secrets.token_hex(8))
    secret = settings.secret_key.get_secret_value()  # type: ignore[union-attr]
    assert secret not in repr(settings)
    assert secret not in str(settings.model_dump())
