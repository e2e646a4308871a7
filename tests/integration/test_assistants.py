"""Assistants: upstream defaults, merging PUT, ranges, delete and its guard."""

from __future__ import annotations

from typing import Any

import pytest
from tests.support import Tenant, numbers

UPSTREAM_DEFAULTS: dict[str, Any] = {
    "voice": {
        "voice_id": "",
        "tts_provider": "cartesia",
        "tts_model": "sonic-3",
        "language": "en",
        "speed": 1.0,
    },
    "llm": {"llm_provider": "openai", "model": "gpt-4o-mini"},
    "transcriber": {"stt_provider": "deepgram", "stt_model": "nova-3", "language": "en"},
    "speech_settings": {
        "style": "neutral",
        "responsiveness": "balanced",
        "interruptions": "on",
        "emotions": "natural",
    },
    "recording": {"enabled": False, "stereo": True, "mp3_enabled": True},
    "knowledge_base_ids": [],
    "assistant_speaks_first": True,
    "machine_detection_timeout_seconds": None,
    "phone_number_id": None,
}


async def put(tenant: Tenant, assistant: dict[str, Any], body: dict[str, Any]) -> Any:
    return await tenant.request("PUT", f"/assistants/{assistant['id']}", json=body)


async def test_create_fills_upstream_defaults(tenant: Tenant) -> None:
    assistant = await tenant.assistant(name="Ava")
    assert assistant["id"].startswith("asst_")
    assert assistant["name"] == "Ava"
    for field, value in UPSTREAM_DEFAULTS.items():
        assert assistant[field] == value, field
    assert assistant["call_actions"]["transfer_mode"] == "cold"
    assert assistant["call_actions"]["webhook_timeout_ms"] == 3500
    assert assistant["call_actions"]["enabled"] is True
    assert assistant["long_term_memory"] == {
        "enabled": False,
        "search_limit": 5,
        "search_threshold": 0.1,
        "system_prompt": "Relevant, user-specific context from previous conversations:\n\n",
    }
    assert assistant["short_term_memory"] == {"enabled": False, "search_limit": 3}
    assert assistant["created_at"].endswith("Z")
    assert await tenant.ok("GET", f"/assistants/{assistant['id']}") == assistant


async def test_create_keeps_given_nested_values_and_fills_the_rest(tenant: Tenant) -> None:
    assistant = await tenant.assistant(voice={"voice_id": "v-42", "speed": 1.5})
    assert assistant["voice"]["voice_id"] == "v-42"
    assert assistant["voice"]["speed"] == 1.5
    assert assistant["voice"]["tts_provider"] == "cartesia"


async def test_name_is_required(tenant: Tenant) -> None:
    response = await tenant.post("/assistants", json={"system_instruction": "Be kind"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "name"]


@pytest.mark.parametrize(("speed", "ok"), [(0.59, False), (0.6, True), (1.5, True), (1.51, False)])
async def test_voice_speed_range_on_create(tenant: Tenant, speed: float, ok: bool) -> None:
    response = await tenant.post("/assistants", json={"name": "A", "voice": {"speed": speed}})
    assert response.status_code == (200 if ok else 422), response.text
    if not ok:
        assert response.json()["detail"][0]["loc"] == ["body", "voice", "speed"]


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"voice": {"pitch": 2}}, ["body", "voice", "pitch"]),
        ({"llm": {"temperature": 0.2}}, ["body", "llm", "temperature"]),
        ({"persona": "pirate"}, ["body", "persona"]),
        ({"call_actions": {"transfer_mode": "hot"}}, ["body", "call_actions", "transfer_mode"]),
        ({"speech_settings": {"style": "shouty"}}, ["body", "speech_settings", "style"]),
        ({"call_actions": {"webhook_url": "ftp://x"}}, ["body", "call_actions", "webhook_url"]),
    ],
)
async def test_unknown_or_invalid_fields_are_422_on_create(
    tenant: Tenant, body: dict[str, Any], loc: list[str]
) -> None:
    response = await tenant.post("/assistants", json={"name": "A", **body})
    assert response.status_code == 422
    assert loc in [problem["loc"] for problem in response.json()["detail"]]


async def test_put_merges_nested_objects_key_by_key(tenant: Tenant) -> None:
    assistant = await tenant.assistant(voice={"voice_id": "v-42"}, llm={"model": "gpt-4o"})
    response = await put(tenant, assistant, {"voice": {"speed": 1.2}, "first_message": "Hi"})
    assert response.status_code == 200, response.text
    stored = await tenant.ok("GET", f"/assistants/{assistant['id']}")
    assert stored["voice"] == {**assistant["voice"], "speed": 1.2}
    assert stored["llm"]["model"] == "gpt-4o"
    assert stored["first_message"] == "Hi"
    assert stored["name"] == assistant["name"]


async def test_put_replaces_top_level_fields(tenant: Tenant) -> None:
    assistant = await tenant.assistant(knowledge_base_ids=["kb1", "kb2"])
    response = await put(tenant, assistant, {"knowledge_base_ids": ["kb3"], "name": "Bea"})
    assert response.status_code == 200
    stored = await tenant.ok("GET", f"/assistants/{assistant['id']}")
    assert stored["knowledge_base_ids"] == ["kb3"]
    assert stored["name"] == "Bea"


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"voice": {"speed": 1.6}}, ["body", "voice", "speed"]),
        ({"voice": {"speed": 0.5}}, ["body", "voice", "speed"]),
        ({"voice": {"pitch": 2}}, ["body", "voice", "pitch"]),
        ({"recording": {"format": "wav"}}, ["body", "recording", "format"]),
        ({"machine_detection_timeout_seconds": 61}, ["body", "machine_detection_timeout_seconds"]),
        ({"persona": "pirate"}, ["body", "persona"]),
        ({"name": ""}, ["body", "name"]),
        ({"call_actions": {"webhook_url": "not a url"}}, ["body", "call_actions", "webhook_url"]),
    ],
)
async def test_put_refuses_bad_values_and_changes_nothing(
    tenant: Tenant, body: dict[str, Any], loc: list[str]
) -> None:
    assistant = await tenant.assistant()
    response = await put(tenant, assistant, body)
    assert response.status_code == 422, response.text
    assert loc in [problem["loc"] for problem in response.json()["detail"]]
    assert await tenant.ok("GET", f"/assistants/{assistant['id']}") == assistant


async def test_put_unknown_assistant_is_404(tenant: Tenant, other_tenant: Tenant) -> None:
    foreign = await other_tenant.assistant()
    response = await put(tenant, foreign, {"name": "Mine"})
    assert response.status_code == 404
    assert (await other_tenant.ok("GET", f"/assistants/{foreign['id']}"))["name"] == "Ava"


async def test_phone_number_link_must_be_owned(tenant: Tenant, other_tenant: Tenant) -> None:
    foreign = await other_tenant.phone_number()
    response = await tenant.post(
        "/assistants", json={"name": "A", "phone_number_id": foreign["id"]}
    )
    assert response.status_code == 404
    own = await tenant.phone_number()
    assistant = await tenant.assistant(phone_number_id=own["id"])
    assert assistant["phone_number_id"] == own["id"]


async def test_list_pages_with_total(tenant: Tenant) -> None:
    for name in ("A", "B", "C"):
        await tenant.assistant(name=name)
    response = await tenant.get("/assistants", params={"limit": 2})
    assert response.headers["X-Total-Count"] == "3"
    assert len(response.json()) == 2


async def test_delete_then_404(tenant: Tenant) -> None:
    assistant = await tenant.assistant()
    await tenant.ok("DELETE", f"/assistants/{assistant['id']}")
    assert (await tenant.get(f"/assistants/{assistant['id']}")).status_code == 404
    assert (await put(tenant, assistant, {"name": "B"})).status_code == 404
    assert (await tenant.request("DELETE", f"/assistants/{assistant['id']}")).status_code == 404
    listed = await tenant.get("/assistants")
    assert listed.headers["X-Total-Count"] == "0"


async def test_deleted_assistant_cannot_back_a_new_campaign(tenant: Tenant) -> None:
    assistant = await tenant.assistant()
    await tenant.ok("DELETE", f"/assistants/{assistant['id']}")
    number = await tenant.phone_number()
    body = {"name": "c", "assistant_id": assistant["id"], "phone_number_id": number["id"]}
    assert (await tenant.post("/campaign", json=body)).status_code == 404


@pytest.mark.parametrize("actions", [[], ["start"], ["start", "pause"]])
async def test_delete_refused_while_an_open_campaign_uses_it(
    tenant: Tenant, actions: list[str]
) -> None:
    assistant = await tenant.assistant()
    campaign = await tenant.campaign(
        assistant_id=assistant["id"], recipients=[{"phone_number": numbers(1)[0]}]
    )
    for action in actions:
        await tenant.ok("POST", f"/campaign/{campaign['id']}/{action}")
    response = await tenant.request("DELETE", f"/assistants/{assistant['id']}")
    assert response.status_code == 409
    assert (await tenant.get(f"/assistants/{assistant['id']}")).status_code == 200


async def test_delete_allowed_once_the_campaign_completed(tenant: Tenant) -> None:
    assistant = await tenant.assistant(name="Old")
    campaign = await tenant.campaign(
        assistant_id=assistant["id"], recipients=[{"phone_number": numbers(1)[0]}]
    )
    for action in ("start", "stop"):
        await tenant.ok("POST", f"/campaign/{campaign['id']}/{action}")
    await tenant.ok("DELETE", f"/assistants/{assistant['id']}")
    assert (await tenant.ok("GET", f"/campaign/{campaign['id']}"))["assistant_id"] == assistant[
        "id"
    ]


async def test_campaign_speech_settings_override_the_assistants(tenant: Tenant) -> None:
    assistant = await tenant.assistant(
        speech_settings={"style": "professional", "responsiveness": "instant"}
    )
    plain = await tenant.campaign(assistant_id=assistant["id"])
    assert plain["speech_settings"]["style"] == "professional"
    assert plain["speech_settings"]["responsiveness"] == "instant"
    number = await tenant.phone_number("+14155550124")
    tuned = await tenant.campaign(
        assistant_id=assistant["id"],
        phone_number_id=number["id"],
        speech_settings={"style": "friendly"},
    )
    assert tuned["speech_settings"]["style"] == "friendly"
    assert tuned["speech_settings"]["responsiveness"] == "instant"


async def test_campaign_inherits_the_assistants_amd_timeout(tenant: Tenant) -> None:
    assistant = await tenant.assistant(machine_detection_timeout_seconds=8)
    campaign = await tenant.campaign(assistant_id=assistant["id"])
    assert campaign["machine_detection_timeout_seconds"] == 8


async def test_put_still_works_after_the_linked_number_is_deleted(tenant: Tenant) -> None:
    number = await tenant.phone_number()
    assistant = await tenant.assistant(phone_number_id=number["id"])
    await tenant.ok("DELETE", f"/phone-numbers/{number['id']}")
    response = await put(tenant, assistant, {"first_message": "Hello again"})
    assert response.status_code == 200, response.text
    assert response.json()["first_message"] == "Hello again"
    relinked = await put(tenant, assistant, {"phone_number_id": number["id"]})
    assert relinked.status_code == 404
