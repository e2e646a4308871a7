"""POST /campaign input rules: every range and enum of the seed, recipients and templates."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from tests.support import Tenant, numbers

CALLER = {"twilio": "+14155550123", "vobiz": "+14155550124"}


async def refs(tenant: Tenant, provider: str = "twilio") -> dict[str, str]:
    """A fresh assistant and caller number for `provider`, as campaign body fields."""
    assistant = await tenant.assistant()
    number = await tenant.phone_number(CALLER[provider], provider=provider)
    return {"assistant_id": assistant["id"], "phone_number_id": number["id"]}


async def create(tenant: Tenant, **fields: Any) -> httpx.Response:
    body = {"name": "Spring renewals", **(await refs(tenant)), **fields}
    return await tenant.post("/campaign", json=body)


def problems(response: httpx.Response) -> list[dict[str, Any]]:
    """The 422 body's problems, checked to be FastAPI-shaped."""
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, list) and detail
    for problem in detail:
        assert {"loc", "msg", "type"} <= problem.keys(), problem
    return detail


def assert_invalid(response: httpx.Response, *loc: str | int) -> dict[str, Any]:
    """A 422 with a problem located exactly at `loc`; that problem."""
    found = [p for p in problems(response) if p["loc"] == list(loc)]
    assert found, (loc, response.json())
    return found[0]


def assert_invalid_at(response: httpx.Response, *loc: str | int) -> None:
    """A 422 with a problem whose loc starts with `loc` (nested problems go deeper)."""
    found = [p for p in problems(response) if p["loc"][: len(loc)] == list(loc)]
    assert found, (loc, response.json())


@pytest.mark.parametrize(
    ("field", "value", "accepted"),
    [
        ("max_concurrency", 0, False),
        ("max_concurrency", 1, True),
        ("max_concurrency", 200, True),
        ("max_concurrency", 201, False),
        ("machine_detection_timeout_seconds", 2, False),
        ("machine_detection_timeout_seconds", 3, True),
        ("machine_detection_timeout_seconds", 60, True),
        ("machine_detection_timeout_seconds", 61, False),
        ("short_term_summaries_limit", 0, False),
        ("short_term_summaries_limit", 1, True),
        ("short_term_summaries_limit", 20, True),
        ("short_term_summaries_limit", 21, False),
    ],
)
async def test_integer_ranges_hold_at_both_edges(
    tenant: Tenant, field: str, value: int, accepted: bool
) -> None:
    response = await create(tenant, **{field: value})
    if accepted:
        assert response.status_code == 200, response.text
        assert response.json()[field] == value
    else:
        assert_invalid(response, "body", field)


async def test_channel_outside_the_enum_is_refused(tenant: Tenant) -> None:
    assert_invalid(await create(tenant, channel="whatsapp"), "body", "channel")


async def test_channel_must_match_the_phone_numbers_provider(tenant: Tenant) -> None:
    problem = assert_invalid(await create(tenant, channel="vobiz"), "body", "channel")
    assert "twilio" in problem["msg"]
    vobiz = await refs(tenant, provider="vobiz")
    body = {"name": "v", **vobiz}
    assert_invalid(await tenant.post("/campaign", json=body), "body", "channel")
    created = await tenant.ok("POST", "/campaign", json={**body, "channel": "vobiz"})
    assert created["channel"] == "vobiz"


@pytest.mark.parametrize("key", ["style", "responsiveness", "interruptions", "emotions"])
async def test_unknown_speech_setting_value_is_refused(tenant: Tenant, key: str) -> None:
    response = await create(tenant, speech_settings={key: "shouty"})
    assert_invalid(response, "body", "speech_settings", key)


async def test_speech_settings_values_are_kept(tenant: Tenant) -> None:
    chosen = {
        "style": "professional",
        "responsiveness": "instant",
        "interruptions": "off",
        "emotions": "off",
    }
    response = await create(tenant, speech_settings=chosen)
    assert response.status_code == 200, response.text
    assert response.json()["speech_settings"] == chosen


async def test_unknown_speech_settings_key_is_refused(tenant: Tenant) -> None:
    response = await create(tenant, speech_settings={"pitch": "high"})
    assert_invalid(response, "body", "speech_settings", "pitch")


async def test_empty_retry_policy_means_a_single_attempt(tenant: Tenant) -> None:
    response = await create(tenant, retry_policy={})
    assert response.status_code == 200, response.text
    assert response.json()["retry_policy"]["max_attempts"] == 1


@pytest.mark.parametrize(
    ("policy", "loc"),
    [
        ({"max_retries": 3}, ["max_retries"]),
        ({"max_attempts": 0}, ["max_attempts"]),
        ({"max_attempts": 11}, ["max_attempts"]),
        ({"retry_on": ["hung_up"]}, ["retry_on", 0]),
        ({"delays_seconds": [59]}, ["delays_seconds", 0]),
        ({"delays_seconds": [604_801]}, ["delays_seconds", 0]),
        ({"delays_seconds": []}, ["delays_seconds"]),
    ],
)
async def test_retry_policy_out_of_schema_is_refused(
    tenant: Tenant, policy: dict[str, Any], loc: list[str | int]
) -> None:
    assert_invalid(await create(tenant, retry_policy=policy), "body", "retry_policy", *loc)


async def test_retry_policy_edges_are_accepted_and_kept(tenant: Tenant) -> None:
    policy = {
        "max_attempts": 10,
        "retry_on": ["no_answer", "busy", "failed", "voicemail"],
        "delays_seconds": [60, 604_800],
    }
    response = await create(tenant, retry_policy=policy)
    assert response.status_code == 200, response.text
    assert response.json()["retry_policy"] == policy


@pytest.mark.parametrize("field", ["scheduleStartTime", "schedule_end_time"])
async def test_naive_schedule_time_is_refused_with_an_example(tenant: Tenant, field: str) -> None:
    response = await create(tenant, **{field: "2026-12-01T09:00:00"})
    problem = assert_invalid(response, "body", field)
    assert "e.g. 2026-12-01T09:00:00+05:30" in problem["msg"]


@pytest.mark.parametrize(
    ("start_field", "end_field"),
    [
        ("scheduleStartTime", "scheduleEndTime"),
        ("schedule_start_time", "schedule_end_time"),
    ],
)
@pytest.mark.parametrize("end", ["2026-12-01T09:00:00Z", "2026-12-01T08:00:00Z"])
async def test_schedule_end_must_follow_start(
    tenant: Tenant, start_field: str, end_field: str, end: str
) -> None:
    response = await create(tenant, **{start_field: "2026-12-01T09:00:00Z", end_field: end})
    assert_invalid(response, "body", "scheduleEndTime")


async def test_camel_case_schedule_is_stored_in_utc(tenant: Tenant) -> None:
    response = await create(
        tenant,
        scheduleStartTime="2026-12-01T09:00:00+01:00",
        scheduleEndTime="2026-12-01T20:00:00+01:00",
    )
    assert response.status_code == 200, response.text
    assert response.json()["schedule_start_time"] == "2026-12-01T08:00:00.000000Z"
    assert response.json()["schedule_end_time"] == "2026-12-01T19:00:00.000000Z"


async def test_name_is_required(tenant: Tenant) -> None:
    body = await refs(tenant)
    assert_invalid(await tenant.post("/campaign", json=body), "body", "name")


async def test_empty_name_is_refused(tenant: Tenant) -> None:
    assert_invalid(await create(tenant, name=""), "body", "name")


async def test_unknown_top_level_field_is_refused(tenant: Tenant) -> None:
    assert_invalid(await create(tenant, priority="high"), "body", "priority")


async def test_unknown_references_are_404(tenant: Tenant, other_tenant: Tenant) -> None:
    body = {"name": "x", **(await refs(tenant))}
    foreign = await other_tenant.assistant()
    for change in (
        {"assistant_id": foreign["id"]},
        {"phone_number_id": "pn_doesnotexist"},
        {"recipient_list_id": "rl_doesnotexist"},
    ):
        response = await tenant.post("/campaign", json={**body, **change})
        assert response.status_code == 404, (change, response.text)


async def recipients_of(tenant: Tenant, campaign_id: str) -> list[dict[str, Any]]:
    return await tenant.ok("GET", f"/campaign/{campaign_id}/recipients")


async def test_inline_numbers_are_normalised_to_e164(tenant: Tenant) -> None:
    response = await create(
        tenant,
        recipients=[{"phone_number": "(415) 555-0100"}, {"phone_number": "+44 20 7946 0958"}],
    )
    assert response.status_code == 200, response.text
    stored = await recipients_of(tenant, response.json()["id"])
    assert [r["phone_number"] for r in stored] == ["+14155550100", "+442079460958"]


async def test_invalid_inline_number_is_located_by_index(tenant: Tenant) -> None:
    recipients = [{"phone_number": "+14155550100"}, {"phone_number": "12"}]
    response = await create(tenant, recipients=recipients)
    assert_invalid(response, "body", "recipients", 1, "phone_number")
    listed = await tenant.get("/campaign")
    assert listed.headers["X-Total-Count"] == "0"


async def test_nested_metadata_is_refused(tenant: Tenant) -> None:
    recipients = [{"phone_number": "+14155550100", "metadata": {"address": {"city": "SF"}}}]
    response = await create(tenant, recipients=recipients)
    assert_invalid_at(response, "body", "recipients", 0, "metadata")


async def test_flat_metadata_is_kept(tenant: Tenant) -> None:
    metadata = {"name": "Ann", "age": 41, "vip": True, "score": 1.5, "note": None}
    response = await create(
        tenant, recipients=[{"phone_number": "+14155550100", "metadata": metadata}]
    )
    assert response.status_code == 200, response.text
    assert (await recipients_of(tenant, response.json()["id"]))[0]["metadata"] == metadata


async def test_unknown_assistant_override_is_refused(tenant: Tenant) -> None:
    recipients = [{"phone_number": "+14155550100", "assistant_overrides": {"persona": "x"}}]
    response = await create(tenant, recipients=recipients)
    assert_invalid_at(response, "body", "recipients", 0, "assistant_overrides")


async def test_known_assistant_override_is_kept(tenant: Tenant) -> None:
    overrides = {"first_message": "Hi!", "voice": {"speed": 1.2}}
    recipients = [{"phone_number": "+14155550100", "assistant_overrides": overrides}]
    response = await create(tenant, recipients=recipients)
    assert response.status_code == 200, response.text
    stored = await recipients_of(tenant, response.json()["id"])
    assert stored[0]["assistant_overrides"] == overrides


async def test_invalid_assistant_override_value_is_refused(tenant: Tenant) -> None:
    overrides = {"voice": {"speed": 3}}
    recipients = [{"phone_number": "+14155550100", "assistant_overrides": overrides}]
    response = await create(tenant, recipients=recipients)
    assert_invalid_at(response, "body", "recipients", 0, "assistant_overrides")


async def test_a_number_given_twice_is_skipped_the_second_time(tenant: Tenant) -> None:
    first, second = numbers(2)
    recipients = [
        {"phone_number": first},
        {"phone_number": second},
        {"phone_number": first.replace("+1", "")},
    ]
    response = await create(tenant, recipients=recipients)
    assert response.status_code == 200, response.text
    campaign = response.json()
    assert campaign["counts"]["total"] == 3
    assert campaign["counts"]["pending"] == 2
    assert campaign["counts"]["skipped"] == 1
    stored = await recipients_of(tenant, campaign["id"])
    assert [r["status"] for r in stored] == ["pending", "pending", "skipped"]
    assert stored[2]["phone_number"] == first


async def test_template_syntax_error_is_refused(tenant: Tenant) -> None:
    response = await create(tenant, opening_message_template="Hello {{ name ")
    assert_invalid(response, "body", "opening_message_template")


async def test_template_missing_variable_lists_the_recipient(tenant: Tenant) -> None:
    recipients = [
        {"phone_number": "+14155550100", "metadata": {"name": "Ann"}},
        {"phone_number": "+14155550101", "metadata": {}},
    ]
    response = await create(
        tenant, opening_message_template="Hello {{ name }}", recipients=recipients
    )
    found = problems(response)
    assert len(found) == 1
    assert found[0]["loc"][:2] == ["body", "recipients"]
    assert "+14155550101" in found[0]["msg"]
    assert found[0]["phone_number"] == "+14155550101"


async def test_template_with_default_renders_for_everyone(tenant: Tenant) -> None:
    recipients = [{"phone_number": "+14155550101"}]
    response = await create(
        tenant,
        opening_message_template='Hello {{ name | default("there") }}',
        recipients=recipients,
    )
    assert response.status_code == 200, response.text


async def test_template_failure_for_list_rows_is_found_at_start(tenant: Tenant) -> None:
    listing = await tenant.recipient_list("phone_number,name\n+14155550100,Ann\n+14155550101,Bo\n")
    inline = {"phone_number": "+14155550102", "metadata": {"name": "Cy", "surname": "D"}}
    response = await create(
        tenant,
        opening_message_template="Hello {{ name }} {{ surname }}",
        recipient_list_id=listing["id"],
        recipients=[inline],
    )
    assert response.status_code == 200, response.text
    campaign = response.json()
    refused = await tenant.post(f"/campaign/{campaign['id']}/start")
    assert refused.status_code == 422, refused.text
    assert {p["phone_number"] for p in problems(refused)} == {"+14155550100", "+14155550101"}
    after = await tenant.ok("GET", f"/campaign/{campaign['id']}")
    assert after["status"] == "draft"
    assert after["counts"] == campaign["counts"]
    assert len(await recipients_of(tenant, campaign["id"])) == 1


async def test_vobiz_default_timeout_is_clamped_with_a_warning(tenant: Tenant) -> None:
    vobiz = await refs(tenant, provider="vobiz")
    body = {"name": "v", "channel": "vobiz", **vobiz}
    campaign = await tenant.ok("POST", "/campaign", json=body)
    assert campaign["machine_detection_timeout_seconds"] == 30
    assert len(campaign["warnings"]) == 1
    assert "30 s machine-detection timeout is sent as 10000 ms" in campaign["warnings"][0]
    fetched = await tenant.ok("GET", f"/campaign/{campaign['id']}")
    assert fetched["warnings"] == campaign["warnings"]


async def test_vobiz_timeout_within_range_has_no_warning(tenant: Tenant) -> None:
    vobiz = await refs(tenant, provider="vobiz")
    body = {"name": "v", "channel": "vobiz", "machine_detection_timeout_seconds": 5, **vobiz}
    campaign = await tenant.ok("POST", "/campaign", json=body)
    assert campaign["warnings"] == []


async def test_twilio_long_timeout_has_no_warning(tenant: Tenant) -> None:
    response = await create(tenant, machine_detection_timeout_seconds=60)
    assert response.json()["warnings"] == []


async def test_calling_hours_must_be_a_window(tenant: Tenant) -> None:
    assistant = await tenant.assistant()
    number = await tenant.phone_number()
    body = {
        "name": "x",
        "assistant_id": assistant["id"],
        "phone_number_id": number["id"],
        "calling_hours": {"start": "09:00", "end": "09:00"},
    }
    response = await tenant.post("/campaign", json=body)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][:2] == ["body", "calling_hours"]
    body["calling_hours"] = {"start": "21:00", "end": "08:00", "timezone": "America/Chicago"}
    created = await tenant.ok("POST", "/campaign", json=body)
    assert created["calling_hours"]["end"] == "08:00"
