"""Campaign status machine over the API: transitions, snapshot, edits by status, delete, list."""

from __future__ import annotations

from typing import Any

import pytest
from tests.support import Tenant, numbers


def inline(count: int, start: int = 0) -> list[dict[str, Any]]:
    return [
        {"phone_number": n, "metadata": {"name": f"p{i}"}}
        for i, n in enumerate(numbers(count, start))
    ]


async def draft(tenant: Tenant, recipients: int = 2, **fields: Any) -> dict[str, Any]:
    return await tenant.campaign(recipients=inline(recipients), **fields)


async def act(tenant: Tenant, campaign: dict[str, Any], action: str) -> dict[str, Any]:
    return await tenant.ok("POST", f"/campaign/{campaign['id']}/{action}")


async def in_status(tenant: Tenant, status: str, **fields: Any) -> dict[str, Any]:
    """A campaign brought to `status` through the API."""
    campaign = await draft(tenant, **fields)
    path = {"draft": [], "running": ["start"], "paused": ["start", "pause"]}
    for action in path.get(status, ["start", "stop"]):
        campaign = await act(tenant, campaign, action)
    assert campaign["status"] == status
    return campaign


async def patch(tenant: Tenant, campaign: dict[str, Any], body: dict[str, Any]) -> Any:
    return await tenant.request("PATCH", f"/campaign/{campaign['id']}", json=body)


async def fetch(tenant: Tenant, campaign: dict[str, Any]) -> dict[str, Any]:
    return await tenant.ok("GET", f"/campaign/{campaign['id']}")


async def recipients_of(tenant: Tenant, campaign: dict[str, Any]) -> list[dict[str, Any]]:
    return await tenant.ok("GET", f"/campaign/{campaign['id']}/recipients", params={"limit": 500})


async def test_start_runs_a_draft_and_stamps_it(tenant: Tenant) -> None:
    started = await act(tenant, await draft(tenant), "start")
    assert started["status"] == "running"
    assert started["started_at"] is not None
    assert started["counts"]["pending"] == 2
    assert (await fetch(tenant, started))["status"] == "running"


async def test_start_without_recipients_is_409_and_stays_draft(tenant: Tenant) -> None:
    campaign = await tenant.campaign()
    response = await tenant.post(f"/campaign/{campaign['id']}/start")
    assert response.status_code == 409
    assert "no recipients" in response.json()["detail"]
    assert (await fetch(tenant, campaign))["status"] == "draft"


async def test_start_with_an_empty_list_is_409(tenant: Tenant) -> None:
    listing = await tenant.ok("POST", "/recipient-lists", data={"name": "empty"})
    campaign = await tenant.campaign(recipient_list_id=listing["id"])
    response = await tenant.post(f"/campaign/{campaign['id']}/start")
    assert response.status_code == 409


async def test_start_after_schedule_end_is_409(tenant: Tenant) -> None:
    campaign = await draft(tenant, scheduleEndTime="2001-01-01T00:00:00Z")
    response = await tenant.post(f"/campaign/{campaign['id']}/start")
    assert response.status_code == 409
    assert (await fetch(tenant, campaign))["status"] == "draft"


async def test_start_snapshots_the_list(tenant: Tenant) -> None:
    rows = "phone_number,name\n" + "".join(f"{n},p{i}\n" for i, n in enumerate(numbers(3)))
    listing = await tenant.recipient_list(rows)
    campaign = await tenant.campaign(recipient_list_id=listing["id"])
    started = await act(tenant, campaign, "start")
    assert started["counts"]["total"] == 3
    upload = {"file": ("more.csv", f"phone_number\n{numbers(1, 50)[0]}\n", "text/csv")}
    await tenant.ok("POST", f"/recipient-lists/{listing['id']}/recipients/upload-csv", files=upload)
    after = await fetch(tenant, started)
    assert after["counts"]["total"] == 3
    assert [r["phone_number"] for r in await recipients_of(tenant, after)] == numbers(3)
    await tenant.ok("DELETE", f"/recipient-lists/{listing['id']}")
    assert (await fetch(tenant, started))["counts"] == after["counts"]
    assert [r["phone_number"] for r in await recipients_of(tenant, after)] == numbers(3)


async def test_pause_and_resume(tenant: Tenant) -> None:
    campaign = await in_status(tenant, "running")
    paused = await act(tenant, campaign, "pause")
    assert paused["status"] == "paused"
    resumed = await act(tenant, paused, "resume")
    assert resumed["status"] == "running"
    assert resumed["counts"] == campaign["counts"]


@pytest.mark.parametrize("status", ["running", "paused"])
async def test_stop_cancels_waiting_recipients(tenant: Tenant, status: str) -> None:
    campaign = await draft(tenant, 3)
    duplicate = {"recipients": [{"phone_number": numbers(1)[0]}]}
    await tenant.ok("POST", f"/campaign/{campaign['id']}/recipients", json=duplicate)
    campaign = await act(tenant, campaign, "start")
    if status == "paused":
        campaign = await act(tenant, campaign, "pause")
    stopped = await act(tenant, campaign, "stop")
    assert stopped["status"] == "completed"
    assert stopped["ended_reason"] == "stopped"
    assert stopped["completed_at"] is not None
    counts = stopped["counts"]
    assert (counts["total"], counts["pending"], counts["cancelled"], counts["skipped"]) == (
        4,
        0,
        3,
        1,
    )
    statuses = [r["status"] for r in await recipients_of(tenant, stopped)]
    assert statuses == ["cancelled", "cancelled", "cancelled", "skipped"]


async def test_stop_accepts_a_hangup_body(tenant: Tenant) -> None:
    campaign = await in_status(tenant, "running")
    response = await tenant.post(f"/campaign/{campaign['id']}/stop", json={"hangup_active": True})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "completed"


WRONG = [
    ("draft", "pause"),
    ("draft", "resume"),
    ("draft", "stop"),
    ("running", "start"),
    ("running", "resume"),
    ("paused", "start"),
    ("paused", "pause"),
    ("completed", "start"),
    ("completed", "pause"),
    ("completed", "resume"),
    ("completed", "stop"),
]


@pytest.mark.parametrize(("status", "action"), WRONG)
async def test_wrong_transition_is_409_naming_the_status(
    tenant: Tenant, status: str, action: str
) -> None:
    campaign = await in_status(tenant, status)
    response = await tenant.post(f"/campaign/{campaign['id']}/{action}")
    assert response.status_code == 409
    assert status in response.json()["detail"]
    assert await fetch(tenant, campaign) == campaign


async def test_transitions_on_unknown_campaign_are_404(tenant: Tenant) -> None:
    for action in ("start", "pause", "resume", "stop"):
        response = await tenant.post(f"/campaign/cmp_doesnotexist/{action}")
        assert response.status_code == 404


@pytest.mark.parametrize(
    ("status", "allowed"),
    [("draft", True), ("running", False), ("paused", False), ("completed", True)],
)
async def test_delete_only_in_draft_or_completed(
    tenant: Tenant, status: str, allowed: bool
) -> None:
    campaign = await in_status(tenant, status)
    response = await tenant.request("DELETE", f"/campaign/{campaign['id']}")
    if allowed:
        assert response.status_code == 204
        assert (await tenant.get(f"/campaign/{campaign['id']}")).status_code == 404
    else:
        assert response.status_code == 409
        assert status in response.json()["detail"]
        assert (await fetch(tenant, campaign))["status"] == status


async def test_list_filters_by_status_and_counts_the_total(tenant: Tenant) -> None:
    refs = {
        "assistant_id": (await tenant.assistant())["id"],
        "phone_number_id": (await tenant.phone_number())["id"],
    }
    drafted = await in_status(tenant, "draft", **refs)
    running = [await in_status(tenant, "running", **refs) for _ in range(2)]
    everything = await tenant.get("/campaign")
    assert everything.headers["X-Total-Count"] == "3"
    assert {c["id"] for c in everything.json()} == {drafted["id"], *(c["id"] for c in running)}
    only_running = await tenant.get("/campaign", params={"status": "running"})
    assert only_running.headers["X-Total-Count"] == "2"
    assert {c["status"] for c in only_running.json()} == {"running"}
    page = await tenant.get("/campaign", params={"limit": 1, "offset": 1})
    assert page.headers["X-Total-Count"] == "3"
    assert len(page.json()) == 1
    assert (await tenant.get("/campaign", params={"status": "done"})).status_code == 422


@pytest.mark.parametrize(("limit", "ok"), [(0, False), (1, True), (500, True), (501, False)])
async def test_list_limit_bounds(tenant: Tenant, limit: int, ok: bool) -> None:
    response = await tenant.get("/campaign", params={"limit": limit})
    assert response.status_code == (200 if ok else 422)
    if not ok:
        assert response.json()["detail"][0]["loc"] == ["query", "limit"]


async def test_negative_offset_is_422(tenant: Tenant) -> None:
    response = await tenant.get("/campaign", params={"offset": -1})
    assert response.status_code == 422


async def test_recipients_page_and_filter(tenant: Tenant) -> None:
    campaign = await draft(tenant, 5)
    page = await tenant.get(
        f"/campaign/{campaign['id']}/recipients", params={"limit": 2, "offset": 2}
    )
    assert page.headers["X-Total-Count"] == "5"
    assert [r["phone_number"] for r in page.json()] == numbers(5)[2:4]
    pending = await tenant.get(
        f"/campaign/{campaign['id']}/recipients", params={"status": "cancelled"}
    )
    assert pending.headers["X-Total-Count"] == "0"
    assert pending.json() == []


# --- PATCH rules --------------------------------------------------------------------------

DRAFT_EDITS: list[dict[str, Any]] = [
    {"name": "Renamed"},
    {"max_concurrency": 7},
    {"campaign_context": "New context"},
    {"opening_message_template": "Hi {{ name }}"},
    {"use_returning_greeting": True},
    {"use_short_term_summaries": True},
    {"short_term_summaries_limit": 9},
    {"machine_detection_timeout_seconds": 12},
    {"retry_policy": {"max_attempts": 3, "retry_on": ["busy"], "delays_seconds": [600]}},
    {"speech_settings": {"style": "friendly"}},
    {"calling_hours": {"start": "09:00", "end": "20:00", "days": ["mon"], "timezone": "recipient"}},
]


@pytest.mark.parametrize("edit", DRAFT_EDITS, ids=lambda e: next(iter(e)))
async def test_draft_edit_applies(tenant: Tenant, edit: dict[str, Any]) -> None:
    campaign = await draft(tenant)
    response = await patch(tenant, campaign, edit)
    assert response.status_code == 200, response.text
    stored = await fetch(tenant, campaign)
    field, value = next(iter(edit.items()))
    if field == "speech_settings":
        assert stored[field]["style"] == "friendly"
        assert stored[field]["responsiveness"] == "balanced"
    elif field == "calling_hours":
        assert {k: stored[field][k] for k in value} == value
    else:
        assert stored[field] == value


async def test_draft_schedule_edit_applies(tenant: Tenant) -> None:
    campaign = await draft(tenant)
    body = {
        "scheduleStartTime": "2030-01-01T09:00:00Z",
        "schedule_end_time": "2030-01-02T09:00:00Z",
    }
    assert (await patch(tenant, campaign, body)).status_code == 200
    stored = await fetch(tenant, campaign)
    assert stored["schedule_start_time"] == "2030-01-01T09:00:00.000000Z"
    assert stored["schedule_end_time"] == "2030-01-02T09:00:00.000000Z"
    response = await patch(tenant, campaign, {"scheduleEndTime": "2029-12-31T00:00:00Z"})
    assert response.status_code == 422
    assert (await fetch(tenant, campaign))["schedule_end_time"] == "2030-01-02T09:00:00.000000Z"


async def test_draft_attach_and_detach_list(tenant: Tenant) -> None:
    campaign = await draft(tenant)
    listing = await tenant.recipient_list(f"phone_number\n{numbers(1, 90)[0]}\n", name="late")
    assert (await patch(tenant, campaign, {"recipient_list_id": listing["id"]})).status_code == 200
    assert (await fetch(tenant, campaign))["recipient_list_name"] == "late"
    assert (await patch(tenant, campaign, {"recipient_list_id": None})).status_code == 200
    assert (await fetch(tenant, campaign))["recipient_list_id"] is None
    missing = await patch(tenant, campaign, {"recipient_list_id": "rl_doesnotexist"})
    assert missing.status_code == 404


@pytest.mark.parametrize("status", ["draft", "running", "paused", "completed"])
@pytest.mark.parametrize(
    "edit",
    [{"assistant_id": "asst_x"}, {"phone_number_id": "pn_x"}, {"channel": "vobiz"}],
    ids=lambda e: next(iter(e)),
)
async def test_fixed_fields_are_409_in_every_status(
    tenant: Tenant, status: str, edit: dict[str, Any]
) -> None:
    campaign = await in_status(tenant, status)
    response = await patch(tenant, campaign, edit)
    assert response.status_code == 409
    assert next(iter(edit)) in response.json()["detail"]
    assert await fetch(tenant, campaign) == campaign


# (edit, the response field it changes, a key inside that field or None, the value expected)
LIVE_EDITS: list[tuple[dict[str, Any], str, str | None, Any]] = [
    ({"name": "Renamed"}, "name", None, "Renamed"),
    ({"max_concurrency": 50}, "max_concurrency", None, 50),
    (
        {"scheduleEndTime": "2099-01-01T00:00:00Z"},
        "schedule_end_time",
        None,
        "2099-01-01T00:00:00.000000Z",
    ),
    ({"retry_policy": {"max_attempts": 2}}, "retry_policy", "max_attempts", 2),
    ({"calling_hours": {"start": "22:00", "end": "06:00"}}, "calling_hours", "start", "22:00"),
]
LIVE_REFUSED: list[dict[str, Any]] = [
    {"scheduleStartTime": "2099-01-01T00:00:00Z"},
    {"campaign_context": "x"},
    {"opening_message_template": "Hi"},
    {"speech_settings": {"style": "friendly"}},
    {"machine_detection_timeout_seconds": 10},
    {"short_term_summaries_limit": 5},
    {"use_returning_greeting": True},
    {"recipient_list_id": None},
]


@pytest.mark.parametrize("status", ["running", "paused"])
@pytest.mark.parametrize(("edit", "field", "key", "expected"), LIVE_EDITS, ids=lambda e: str(e))
async def test_live_edit_applies(
    tenant: Tenant, status: str, edit: dict[str, Any], field: str, key: str | None, expected: Any
) -> None:
    campaign = await in_status(tenant, status)
    response = await patch(tenant, campaign, edit)
    assert response.status_code == 200, response.text
    stored = await fetch(tenant, campaign)
    assert stored["status"] == status
    assert (stored[field] if key is None else stored[field][key]) == expected
    assert stored["counts"] == campaign["counts"]


@pytest.mark.parametrize("status", ["running", "paused"])
@pytest.mark.parametrize("edit", LIVE_REFUSED, ids=lambda e: next(iter(e)))
async def test_live_edit_refused(tenant: Tenant, status: str, edit: dict[str, Any]) -> None:
    campaign = await in_status(tenant, status)
    response = await patch(tenant, campaign, edit)
    assert response.status_code == 409
    assert status in response.json()["detail"]
    assert await fetch(tenant, campaign) == campaign


async def test_live_edit_with_one_refused_field_changes_nothing(tenant: Tenant) -> None:
    campaign = await in_status(tenant, "running")
    response = await patch(tenant, campaign, {"name": "New", "campaign_context": "x"})
    assert response.status_code == 409
    assert "campaign_context" in response.json()["detail"]
    assert (await fetch(tenant, campaign))["name"] == campaign["name"]


async def test_live_patch_appends_recipients(tenant: Tenant) -> None:
    campaign = await in_status(tenant, "running")
    response = await patch(tenant, campaign, {"recipients": inline(2, start=10)})
    assert response.status_code == 200, response.text
    counts = (await fetch(tenant, campaign))["counts"]
    assert (counts["total"], counts["pending"]) == (4, 4)


async def test_completed_accepts_only_a_name(tenant: Tenant) -> None:
    campaign = await in_status(tenant, "completed")
    assert (await patch(tenant, campaign, {"name": "Archived"})).status_code == 200
    assert (await fetch(tenant, campaign))["name"] == "Archived"
    for edit in ({"max_concurrency": 9}, {"recipients": inline(1, 20)}, {"retry_policy": {}}):
        response = await patch(tenant, campaign, edit)
        assert response.status_code == 409, edit
        assert "completed" in response.json()["detail"]


async def test_null_for_a_required_field_is_422(tenant: Tenant) -> None:
    campaign = await draft(tenant)
    response = await patch(tenant, campaign, {"name": None})
    assert response.status_code == 422
    assert (await fetch(tenant, campaign))["name"] == campaign["name"]


async def test_patch_unknown_field_is_422(tenant: Tenant) -> None:
    campaign = await draft(tenant)
    response = await patch(tenant, campaign, {"priority": 1})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "priority"]


@pytest.mark.parametrize("status", ["draft", "running", "paused"])
async def test_append_recipients_updates_counts(tenant: Tenant, status: str) -> None:
    campaign = await in_status(tenant, status)
    body = {"recipients": [*inline(2, start=30), {"phone_number": numbers(1)[0]}]}
    appended = await tenant.ok("POST", f"/campaign/{campaign['id']}/recipients", json=body)
    counts = appended["counts"]
    assert (counts["total"], counts["pending"], counts["skipped"]) == (5, 4, 1)
    assert [r["position"] for r in await recipients_of(tenant, appended)] == [1, 2, 3, 4, 5]


async def test_append_to_completed_is_409(tenant: Tenant) -> None:
    campaign = await in_status(tenant, "completed")
    body = {"recipients": inline(1, start=40)}
    response = await tenant.post(f"/campaign/{campaign['id']}/recipients", json=body)
    assert response.status_code == 409
    assert (await fetch(tenant, campaign))["counts"] == campaign["counts"]


async def test_append_checks_numbers_and_templates(tenant: Tenant) -> None:
    campaign = await draft(tenant, opening_message_template="Hi {{ name }}")
    path = f"/campaign/{campaign['id']}/recipients"
    bad_number = await tenant.post(path, json={"recipients": [{"phone_number": "nope"}]})
    assert bad_number.status_code == 422
    assert bad_number.json()["detail"][0]["loc"] == ["body", "recipients", 0, "phone_number"]
    nameless = await tenant.post(path, json={"recipients": [{"phone_number": numbers(1, 60)[0]}]})
    assert nameless.status_code == 422
    assert (await tenant.post(path, json={"recipients": []})).status_code == 422
    assert (await fetch(tenant, campaign))["counts"] == campaign["counts"]
