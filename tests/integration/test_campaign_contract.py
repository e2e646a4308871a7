"""The seed page's POST /campaign: its example body works and every response field is there."""

from __future__ import annotations

from typing import Any

from tests.support import Tenant, numbers

SEED_RESPONSE_FIELDS: dict[str, Any] = {
    "id": str,
    "name": str,
    "assistant_id": str,
    "channel": str,
    "phone_number_id": str,
    "status": str,
    "max_concurrency": int,
    "retry_policy": dict,
    "speech_settings": dict,
    "assistant_name": (str, type(None)),
    "caller_id_number": (str, type(None)),
    "schedule_start_time": (str, type(None)),
    "schedule_end_time": (str, type(None)),
    "campaign_context": (str, type(None)),
    "opening_message_template": (str, type(None)),
    "use_returning_greeting": bool,
    "use_short_term_summaries": bool,
    "short_term_summaries_limit": (int, type(None)),
    "machine_detection_timeout_seconds": (int, type(None)),
    "recipient_list_id": (str, type(None)),
    "recipient_list_name": (str, type(None)),
    "recipient_list_row_count": (int, type(None)),
    "counts": dict,
    "created_at": (str, type(None)),
    "updated_at": (str, type(None)),
}


def seed_body(assistant_id: str, phone_number_id: str, list_id: str) -> dict[str, Any]:
    return {
        "name": "Spring renewals",
        "assistant_id": assistant_id,
        "phone_number_id": phone_number_id,
        "channel": "twilio",
        "scheduleStartTime": "2026-12-01T09:00:00+05:30",
        "scheduleEndTime": "2026-12-31T18:00:00Z",
        "max_concurrency": 5,
        "retry_policy": {},
        "speech_settings": {
            "style": "neutral",
            "responsiveness": "balanced",
            "interruptions": "on",
            "emotions": "natural",
        },
        "campaign_context": "Renewal reminder for existing customers.",
        "opening_message_template": "Hello {{ name | default('there') }}!",
        "use_returning_greeting": False,
        "use_short_term_summaries": False,
        "short_term_summaries_limit": 3,
        "machine_detection_timeout_seconds": 31,
        "recipient_list_id": list_id,
        "recipients": [
            {"phone_number": "+14155550100", "metadata": {"name": "Ann"}, "assistant_overrides": {}}
        ],
    }


async def test_seed_example_returns_every_field_with_its_type(tenant: Tenant) -> None:
    assistant = await tenant.assistant(name="Ava")
    number = await tenant.phone_number()
    listing = await tenant.recipient_list("phone_number,name\n+14155550199,Bo\n", name="vip")
    response = await tenant.post(
        "/campaign", json=seed_body(assistant["id"], number["id"], listing["id"])
    )
    assert response.status_code == 200, response.text
    campaign = response.json()
    for field, kind in SEED_RESPONSE_FIELDS.items():
        assert field in campaign, field
        assert isinstance(campaign[field], kind), (field, campaign[field])
    assert campaign["id"].startswith("cmp_")
    assert campaign["status"] == "draft"
    assert campaign["assistant_name"] == "Ava"
    assert campaign["caller_id_number"] == "+14155550123"
    assert campaign["schedule_start_time"] == "2026-12-01T03:30:00.000000Z"
    assert campaign["schedule_end_time"] == "2026-12-31T18:00:00.000000Z"
    assert campaign["recipient_list_name"] == "vip"
    assert campaign["recipient_list_row_count"] == 1
    assert campaign["machine_detection_timeout_seconds"] == 31
    assert campaign["retry_policy"] == {
        "max_attempts": 1,
        "retry_on": ["no_answer", "busy", "failed"],
        "delays_seconds": [1800],
    }
    assert campaign["created_at"].endswith("Z")


async def test_defaults_when_only_required_fields_are_sent(tenant: Tenant) -> None:
    assistant = await tenant.assistant()
    number = await tenant.phone_number()
    campaign = await tenant.ok(
        "POST",
        "/campaign",
        json={"name": "Minimal", "assistant_id": assistant["id"], "phone_number_id": number["id"]},
    )
    assert campaign["channel"] == "twilio"
    assert campaign["max_concurrency"] == 5
    assert campaign["use_returning_greeting"] is False
    assert campaign["use_short_term_summaries"] is False
    assert campaign["short_term_summaries_limit"] == 3
    assert campaign["machine_detection_timeout_seconds"] == 30
    assert campaign["speech_settings"] == {
        "style": "neutral",
        "responsiveness": "balanced",
        "interruptions": "on",
        "emotions": "natural",
    }
    assert campaign["schedule_start_time"] is None
    assert campaign["recipient_list_id"] is None
    assert campaign["warnings"] == []
    assert set(campaign["counts"]) >= {
        "pending",
        "total",
        "calls_placed",
        "calls_active",
        "expired",
    }
    assert all(value == 0 for value in campaign["counts"].values())


async def test_snake_case_schedule_names_are_accepted(tenant: Tenant) -> None:
    campaign = await tenant.campaign(
        schedule_start_time="2026-12-01T09:00:00-05:00",
        schedule_end_time="2026-12-02T09:00:00-05:00",
    )
    assert campaign["schedule_start_time"] == "2026-12-01T14:00:00.000000Z"
    assert campaign["schedule_end_time"] == "2026-12-02T14:00:00.000000Z"


async def test_counts_follow_inline_recipients_and_the_list_snapshot(tenant: Tenant) -> None:
    listing = await tenant.recipient_list(
        "phone_number,name\n" + "".join(f"{n},p{i}\n" for i, n in enumerate(numbers(5)))
    )
    inline = [{"phone_number": n} for n in numbers(2, start=4)]  # one overlaps the list
    campaign = await tenant.campaign(recipient_list_id=listing["id"], recipients=inline)
    assert campaign["counts"]["total"] == 2
    assert campaign["counts"]["pending"] == 2
    started = await tenant.ok("POST", f"/campaign/{campaign['id']}/start")
    assert started["status"] == "running"
    assert started["counts"]["total"] == 7
    assert started["counts"]["pending"] == 6
    assert started["counts"]["skipped"] == 1
