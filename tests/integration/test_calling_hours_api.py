"""`calling_hours` over the API: what POST /campaign and PATCH accept, refuse, and store."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from tests.support import Tenant, numbers

VALID = {"start": "09:00", "end": "20:00"}

# (calling_hours, the loc of the problem below ["body", "calling_hours"])
REFUSED: list[tuple[dict[str, Any], list[str | int]]] = [
    ({"start": "24:00", "end": "08:00"}, ["start"]),
    ({"start": "9:00", "end": "20:00"}, ["start"]),
    ({"start": "09:00", "end": "24:01"}, ["end"]),
    ({"start": "09:00", "end": "20:60"}, ["end"]),
    ({"start": "09:00", "end": "20:00\n"}, ["end"]),
    ({"start": "0\u0669:00", "end": "20:00"}, ["start"]),  # an Arabic-Indic nine
    ({"start": "09:00"}, ["end"]),
    ({"start": "09:00", "end": "09:00"}, []),
    ({**VALID, "days": []}, ["days"]),
    ({**VALID, "days": ["mon", "tue", "mon"]}, ["days"]),
    ({**VALID, "days": ["monday"]}, ["days", 0]),
    ({**VALID, "days": ["Mon"]}, ["days", 0]),
    ({**VALID, "timezone": "Mars/Olympus_Mons"}, ["timezone"]),
    ({**VALID, "timezone": "america/new_york"}, ["timezone"]),
    ({**VALID, "timezone": "localtime"}, ["timezone"]),
    ({**VALID, "timezone": "../zoneinfo/UTC"}, ["timezone"]),
    ({**VALID, "default_timezone": "Factory"}, ["default_timezone"]),
    ({**VALID, "default_timezone": "recipient"}, ["default_timezone"]),
    ({**VALID, "default_timezone": "+05:30"}, ["default_timezone"]),
    ({**VALID, "tz": "UTC"}, ["tz"]),
    ({**VALID, "start": 900}, ["start"]),
]


def problem_at(response: httpx.Response, loc: list[str | int]) -> dict[str, Any]:
    """The 422 problem located exactly at body.calling_hours.<loc>."""
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    found = [p for p in detail if p["loc"] == ["body", "calling_hours", *loc]]
    assert found, detail
    assert {"loc", "msg", "type"} == found[0].keys()
    return found[0]


async def refs(tenant: Tenant) -> dict[str, str]:
    assistant = await tenant.assistant()
    number = await tenant.phone_number()
    return {"assistant_id": assistant["id"], "phone_number_id": number["id"]}


async def create(tenant: Tenant, calling_hours: Any) -> httpx.Response:
    body = {"name": "Local hours", "calling_hours": calling_hours, **(await refs(tenant))}
    return await tenant.post("/campaign", json=body)


async def patch(tenant: Tenant, campaign: dict[str, Any], body: dict[str, Any]) -> Any:
    return await tenant.request("PATCH", f"/campaign/{campaign['id']}", json=body)


@pytest.mark.parametrize(("hours", "loc"), REFUSED, ids=lambda v: repr(v))
async def test_create_refuses_bad_calling_hours_naming_the_field(
    tenant: Tenant, hours: dict[str, Any], loc: list[str | int]
) -> None:
    problem_at(await create(tenant, hours), loc)
    assert await tenant.ok("GET", "/campaign", params={"limit": 500}) == []


async def test_an_unknown_zone_is_named_in_the_message(tenant: Tenant) -> None:
    response = await create(tenant, {**VALID, "timezone": "Mars/Olympus_Mons"})
    assert (
        "'Mars/Olympus_Mons' is not an IANA time zone" in problem_at(response, ["timezone"])["msg"]
    )


async def test_repeated_days_are_named(tenant: Tenant) -> None:
    response = await create(tenant, {**VALID, "days": ["fri", "mon", "fri", "mon"]})
    assert "mon, fri repeated" in problem_at(response, ["days"])["msg"]


@pytest.mark.parametrize(("hours", "loc"), REFUSED, ids=lambda v: repr(v))
async def test_patch_refuses_bad_calling_hours_and_changes_nothing(
    tenant: Tenant, hours: dict[str, Any], loc: list[str | int]
) -> None:
    campaign = await tenant.campaign(calling_hours=VALID)
    problem_at(await patch(tenant, campaign, {"name": "Renamed", "calling_hours": hours}), loc)
    assert await tenant.ok("GET", f"/campaign/{campaign['id']}") == campaign


async def test_patch_of_a_running_campaign_is_validated_too(tenant: Tenant) -> None:
    recipients = [{"phone_number": n} for n in numbers(1)]
    campaign = await tenant.campaign(recipients=recipients, calling_hours=VALID)
    running = await tenant.ok("POST", f"/campaign/{campaign['id']}/start")
    response = await patch(tenant, running, {"calling_hours": {**VALID, "days": ["sun", "sun"]}})
    problem_at(response, ["days"])
    stored = await tenant.ok("GET", f"/campaign/{campaign['id']}")
    assert stored["calling_hours"] == running["calling_hours"]


async def test_defaults_are_filled_in_and_stored(tenant: Tenant) -> None:
    response = await create(tenant, VALID)
    assert response.status_code == 200, response.text
    expected = {
        "start": "09:00",
        "end": "20:00",
        "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
        "timezone": "recipient",
        "default_timezone": "UTC",
    }
    assert response.json()["calling_hours"] == expected
    stored = await tenant.ok("GET", f"/campaign/{response.json()['id']}")
    assert stored["calling_hours"] == expected


@pytest.mark.parametrize(
    "hours",
    [
        {"start": "00:00", "end": "24:00", "days": ["sat", "sun"]},
        {"start": "18:00", "end": "24:00"},
        {"start": "21:00", "end": "02:00", "days": ["fri"], "timezone": "Europe/Berlin"},
        {"start": "23:59", "end": "00:00", "default_timezone": "Asia/Kolkata"},
        {"start": "09:00", "end": "17:30", "timezone": "America/Argentina/Buenos_Aires"},
    ],
    ids=lambda v: repr(v),
)
async def test_windows_accepted_are_echoed(tenant: Tenant, hours: dict[str, Any]) -> None:
    response = await create(tenant, hours)
    assert response.status_code == 200, response.text
    stored = response.json()["calling_hours"]
    assert {key: stored[key] for key in hours} == hours


async def test_patch_replaces_the_whole_window_and_null_removes_it(tenant: Tenant) -> None:
    campaign = await tenant.campaign(
        calling_hours={**VALID, "days": ["mon"], "timezone": "Asia/Tokyo"}
    )
    body = {"calling_hours": {"start": "21:00", "end": "24:00"}}
    updated = await tenant.ok("PATCH", f"/campaign/{campaign['id']}", json=body)
    assert updated["calling_hours"]["end"] == "24:00"
    assert updated["calling_hours"]["days"] == ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    assert updated["calling_hours"]["timezone"] == "recipient"
    cleared = await tenant.ok("PATCH", f"/campaign/{campaign['id']}", json={"calling_hours": None})
    assert cleared["calling_hours"] is None
