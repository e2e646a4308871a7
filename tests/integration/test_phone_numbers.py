"""Phone numbers: credentials by provider, E.164, uniqueness, edits, rotation, delete guard."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from tests.support import TWILIO_SID, Tenant, numbers

from outdial.models import PhoneNumber

TWILIO = {"provider": "twilio", "account_sid": TWILIO_SID, "auth_token": "tok-secret-1"}
VOBIZ = {"provider": "vobiz", "auth_id": "MA_VOBIZ_1", "auth_token": "vobiz-secret-1"}


async def create(tenant: Tenant, number: str = "+14155550123", **body: Any) -> Any:
    return await tenant.post("/phone-numbers", json={"phone_number": number, **body})


async def stored_credentials(app: FastAPI, phone_number_id: str) -> dict[str, str]:
    async with app.state.sessionmaker() as session:
        row = await session.get(PhoneNumber, phone_number_id)
        assert row is not None
        return dict(app.state.credential_box.open(row.credentials))


def only_problem_at(response: Any, field: str) -> str:
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert [problem["loc"] for problem in detail] == [["body", field]], detail
    return str(detail[0]["msg"])


@pytest.mark.parametrize("credentials", [TWILIO, VOBIZ], ids=["twilio", "vobiz"])
async def test_create_hides_credentials(
    app: FastAPI, tenant: Tenant, credentials: dict[str, str]
) -> None:
    response = await create(tenant, label="Main line", **credentials)
    assert response.status_code == 200, response.text
    number = response.json()
    assert number["id"].startswith("pn_")
    assert number["provider"] == credentials["provider"]
    assert number["phone_number"] == "+14155550123"
    assert number["label"] == "Main line"
    assert number["status"] == "active"
    assert "secret" not in response.text
    secrets = {k: v for k, v in credentials.items() if k != "provider"}
    assert await stored_credentials(app, number["id"]) == secrets


@pytest.mark.parametrize(
    ("credentials", "missing"),
    [
        (TWILIO, "account_sid"),
        (TWILIO, "auth_token"),
        (VOBIZ, "auth_id"),
        (VOBIZ, "auth_token"),
    ],
)
async def test_missing_credential_is_422_naming_it(
    tenant: Tenant, credentials: dict[str, str], missing: str
) -> None:
    body = {k: v for k, v in credentials.items() if k != missing}
    assert missing in only_problem_at(await create(tenant, **body), missing)
    blank = {**credentials, missing: "   "}
    only_problem_at(await create(tenant, **blank), missing)


@pytest.mark.parametrize(
    ("credentials", "foreign"),
    [(TWILIO, {"auth_id": "MA_1"}), (VOBIZ, {"account_sid": TWILIO_SID})],
)
async def test_other_providers_field_is_422(
    tenant: Tenant, credentials: dict[str, str], foreign: dict[str, str]
) -> None:
    response = await create(tenant, **credentials, **foreign)
    only_problem_at(response, next(iter(foreign)))


@pytest.mark.parametrize(
    "sid",
    ["AC0123", "XX" + "0" * 32, "AC" + "g" * 32, TWILIO_SID + "0", "ac" + "0" * 32],
)
async def test_twilio_sid_shape_is_checked(tenant: Tenant, sid: str) -> None:
    only_problem_at(await create(tenant, **{**TWILIO, "account_sid": sid}), "account_sid")


async def test_unknown_provider_is_422(tenant: Tenant) -> None:
    response = await create(tenant, provider="whatsapp", auth_token="t")
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "provider"]


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("(415) 555-0100", "+14155550100"),
        ("415.555.0100", "+14155550100"),
        ("+91 98765 43210", "+919876543210"),
    ],
)
async def test_number_is_normalised_to_e164(tenant: Tenant, raw: str, e164: str) -> None:
    response = await create(tenant, raw, **TWILIO)
    assert response.status_code == 200, response.text
    assert response.json()["phone_number"] == e164


@pytest.mark.parametrize("raw", ["12", "not a number", "+1 415 555"])
async def test_invalid_number_is_422(tenant: Tenant, raw: str) -> None:
    only_problem_at(await create(tenant, raw, **TWILIO), "phone_number")


async def test_same_number_twice_is_409_even_written_differently(tenant: Tenant) -> None:
    assert (await create(tenant, "+14155550100", **TWILIO)).status_code == 200
    again = await create(tenant, "(415) 555-0100", **VOBIZ)
    assert again.status_code == 409
    assert "+14155550100" in again.json()["detail"]
    listed = await tenant.get("/phone-numbers")
    assert listed.headers["X-Total-Count"] == "1"


async def test_same_number_for_two_users_is_fine(tenant: Tenant, other_tenant: Tenant) -> None:
    assert (await create(tenant, **TWILIO)).status_code == 200
    assert (await create(other_tenant, **TWILIO)).status_code == 200


async def test_number_can_be_connected_again_after_delete(tenant: Tenant) -> None:
    first = (await create(tenant, **TWILIO)).json()
    await tenant.ok("DELETE", f"/phone-numbers/{first['id']}")
    again = await create(tenant, **VOBIZ)
    assert again.status_code == 200, again.text
    assert again.json()["id"] != first["id"]


async def test_patch_label_and_assistant(tenant: Tenant) -> None:
    number = await tenant.phone_number()
    assistant = await tenant.assistant()
    body = {"label": "Sales", "assistant_id": assistant["id"]}
    await tenant.ok("PATCH", f"/phone-numbers/{number['id']}", json=body)
    stored = await tenant.ok("GET", f"/phone-numbers/{number['id']}")
    assert (stored["label"], stored["assistant_id"]) == ("Sales", assistant["id"])
    await tenant.ok("PATCH", f"/phone-numbers/{number['id']}", json={"assistant_id": None})
    stored = await tenant.ok("GET", f"/phone-numbers/{number['id']}")
    assert (stored["label"], stored["assistant_id"]) == ("Sales", None)


async def test_patch_with_another_users_assistant_is_404(
    tenant: Tenant, other_tenant: Tenant
) -> None:
    number = await tenant.phone_number()
    foreign = await other_tenant.assistant()
    response = await tenant.request(
        "PATCH", f"/phone-numbers/{number['id']}", json={"assistant_id": foreign["id"]}
    )
    assert response.status_code == 404
    assert (await tenant.ok("GET", f"/phone-numbers/{number['id']}"))["assistant_id"] is None


async def test_patch_unknown_field_or_provider_is_422(tenant: Tenant) -> None:
    number = await tenant.phone_number()
    for body in ({"provider": "vobiz"}, {"phone_number": "+14155550100"}):
        response = await tenant.request("PATCH", f"/phone-numbers/{number['id']}", json=body)
        assert response.status_code == 422, body


async def test_credentials_rotate(app: FastAPI, tenant: Tenant) -> None:
    number = await tenant.phone_number()
    await tenant.ok("PATCH", f"/phone-numbers/{number['id']}", json={"auth_token": "rotated"})
    assert await stored_credentials(app, number["id"]) == {
        "account_sid": TWILIO_SID,
        "auth_token": "rotated",
    }


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"account_sid": "AC12"}, "account_sid"),
        ({"auth_id": "MA_1"}, "auth_id"),
        ({"auth_token": ""}, "auth_token"),
    ],
)
async def test_bad_rotation_is_422_and_keeps_the_old_secret(
    app: FastAPI, tenant: Tenant, body: dict[str, str], field: str
) -> None:
    number = await tenant.phone_number()
    before = await stored_credentials(app, number["id"])
    response = await tenant.request("PATCH", f"/phone-numbers/{number['id']}", json=body)
    only_problem_at(response, field)
    assert await stored_credentials(app, number["id"]) == before


async def test_vobiz_rotation(app: FastAPI, tenant: Tenant) -> None:
    number = await tenant.phone_number(provider="vobiz")
    await tenant.ok("PATCH", f"/phone-numbers/{number['id']}", json={"auth_id": "MA_2"})
    assert await stored_credentials(app, number["id"]) == {
        "auth_id": "MA_2",
        "auth_token": "vobiz-secret-1",
    }


async def test_other_users_number_is_404(tenant: Tenant, other_tenant: Tenant) -> None:
    foreign = await other_tenant.phone_number()
    path = f"/phone-numbers/{foreign['id']}"
    assert (await tenant.get(path)).status_code == 404
    assert (await tenant.request("PATCH", path, json={"label": "x"})).status_code == 404
    assert (await tenant.request("DELETE", path)).status_code == 404
    assert (await other_tenant.ok("GET", path))["label"] is None


@pytest.mark.parametrize("actions", [[], ["start"], ["start", "pause"]])
async def test_delete_refused_while_an_open_campaign_uses_it(
    tenant: Tenant, actions: list[str]
) -> None:
    number = await tenant.phone_number()
    campaign = await tenant.campaign(
        phone_number_id=number["id"], recipients=[{"phone_number": numbers(1)[0]}]
    )
    for action in actions:
        await tenant.ok("POST", f"/campaign/{campaign['id']}/{action}")
    response = await tenant.request("DELETE", f"/phone-numbers/{number['id']}")
    assert response.status_code == 409
    assert (await tenant.get(f"/phone-numbers/{number['id']}")).status_code == 200


async def test_delete_allowed_once_the_campaign_completed(tenant: Tenant) -> None:
    number = await tenant.phone_number()
    campaign = await tenant.campaign(
        phone_number_id=number["id"], recipients=[{"phone_number": numbers(1)[0]}]
    )
    for action in ("start", "stop"):
        await tenant.ok("POST", f"/campaign/{campaign['id']}/{action}")
    await tenant.ok("DELETE", f"/phone-numbers/{number['id']}")
    assert (await tenant.get(f"/phone-numbers/{number['id']}")).status_code == 404
    kept = await tenant.ok("GET", f"/campaign/{campaign['id']}")
    assert kept["caller_id_number"] == "+14155550123"
