"""Tenancy: another user's id behaves exactly like an unknown id, everywhere.

Every operation of the OpenAPI with an id in its path is probed with a victim's resource and
with an unknown id of the same kind: both answer the same 404, and the victim's resources are
exactly as they were. An operation with an id that has no probe here fails the suite, so a
new endpoint cannot escape the check. Ids inside bodies and list endpoints are checked too.
"""

from __future__ import annotations

import io
import re
import wave
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from tests.support import TWILIO_SID, Tenant

from outdial.app import create_app
from outdial.call import recording
from outdial.config import Settings
from outdial.ids import new_id
from outdial.models import Call

FAR_FUTURE = "2190-01-01T00:00:00Z"  # running campaigns never dial during these tests
CSV = "phone_number,name\n+14155550101,Ann\n+14155550102,Bo\n"
NEW_CSV = "phone_number,name\n+14155550109,Eve\n"


@dataclass(frozen=True)
class Probe:
    """What the intruder sends to one operation, aimed at which of the victim's resources."""

    target: str
    json: Any = None
    csv: str | None = None


PROBES: dict[tuple[str, str], Probe] = {
    ("GET", "/campaign/{campaign_id}"): Probe("draft_campaign"),
    ("PATCH", "/campaign/{campaign_id}"): Probe("draft_campaign", json={"name": "stolen"}),
    ("DELETE", "/campaign/{campaign_id}"): Probe("draft_campaign"),
    ("POST", "/campaign/{campaign_id}/start"): Probe("draft_campaign"),
    ("POST", "/campaign/{campaign_id}/pause"): Probe("running_campaign"),
    ("POST", "/campaign/{campaign_id}/resume"): Probe("paused_campaign"),
    ("POST", "/campaign/{campaign_id}/stop"): Probe(
        "running_campaign", json={"hangup_active": True}
    ),
    ("GET", "/campaign/{campaign_id}/recipients"): Probe("draft_campaign"),
    ("POST", "/campaign/{campaign_id}/recipients"): Probe(
        "running_campaign", json={"recipients": [{"phone_number": "+14155550177"}]}
    ),
    ("GET", "/campaign/{campaign_id}/calls"): Probe("draft_campaign"),
    ("POST", "/recipient-lists/{recipient_list_id}/recipients/upload-csv"): Probe(
        "list", csv=NEW_CSV
    ),
    ("GET", "/recipient-lists/{recipient_list_id}"): Probe("list"),
    ("DELETE", "/recipient-lists/{recipient_list_id}"): Probe("spare_list"),
    ("GET", "/recipient-lists/{recipient_list_id}/recipients"): Probe("list"),
    ("GET", "/phone-numbers/{phone_number_id}"): Probe("phone_number"),
    ("PATCH", "/phone-numbers/{phone_number_id}"): Probe(
        "phone_number", json={"label": "stolen", "auth_token": "stolen"}
    ),
    ("DELETE", "/phone-numbers/{phone_number_id}"): Probe("spare_phone_number"),
    ("GET", "/assistants/{assistant_id}"): Probe("assistant"),
    ("PUT", "/assistants/{assistant_id}"): Probe("assistant", json={"name": "stolen"}),
    ("DELETE", "/assistants/{assistant_id}"): Probe("spare_assistant"),
    ("GET", "/calls/{call_id}"): Probe("call"),
    ("PATCH", "/calls/{call_id}"): Probe("call", json={"label": "stolen"}),
    ("GET", "/calls/{call_id}/recording"): Probe("recorded_call"),
    ("GET", "/do-not-call/{phone_number}"): Probe("dnc_number"),
    ("DELETE", "/do-not-call/{phone_number}"): Probe("dnc_number"),
    ("GET", "/webhooks/{webhook_id}"): Probe("webhook"),
    ("DELETE", "/webhooks/{webhook_id}"): Probe("spare_webhook"),
    ("GET", "/webhooks/{webhook_id}/deliveries"): Probe("webhook"),
    ("GET", "/chat/{session_id}"): Probe("chat_session"),
}

LISTS = ("/campaign", "/assistants", "/phone-numbers", "/recipient-lists", "/calls", "/webhooks")
HOOK_URL = "http://127.0.0.1:9/hooks"  # never delivered in these tests (no deliverer runs)


def operations_with_an_id() -> set[tuple[str, str]]:
    """(METHOD, path) of every authenticated operation whose path carries an id."""
    schema = create_app(Settings()).openapi()
    return {
        (method.upper(), path)
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        if "{" in path and operation.get("security")
    }


def fill(path: str, real_id: str) -> str:
    return re.sub(r"\{\w+\}", real_id, path)


def unknown_like(real_id: str) -> str:
    """A well-formed id of the same kind that nobody owns."""
    return f"{real_id.split('_', 1)[0]}_{'0' * 20}"


@dataclass
class World:
    """One user's resources, in every state the probes need."""

    owner: Tenant
    ids: dict[str, str] = field(default_factory=dict)

    def paths(self) -> list[str]:
        campaigns = [self.ids[k] for k in self.ids if k.endswith("_campaign")]
        lists = [self.ids["list"], self.ids["spare_list"]]
        return [
            *LISTS,
            *(f"/campaign/{c}{tail}" for c in campaigns for tail in ("", "/recipients", "/calls")),
            *(f"/recipient-lists/{rl}{tail}" for rl in lists for tail in ("", "/recipients")),
            *(f"/phone-numbers/{self.ids[k]}" for k in ("phone_number", "spare_phone_number")),
            *(f"/assistants/{self.ids[k]}" for k in ("assistant", "spare_assistant")),
            f"/calls/{self.ids['call']}",
            f"/calls/{self.ids['recorded_call']}",
            "/do-not-call",
            f"/do-not-call/{self.ids['dnc_number']}",
            *(f"/webhooks/{self.ids[k]}" for k in ("webhook", "spare_webhook")),
            f"/webhooks/{self.ids['webhook']}/deliveries",
            f"/chat/{self.ids['chat_session']}",
        ]

    async def snapshot(self) -> dict[str, Any]:
        """Everything the owner can read about these resources."""
        views = {}
        for path in self.paths():
            response = await self.owner.get(path)
            views[path] = (
                response.status_code,
                response.json(),
                response.headers.get("x-total-count"),
            )
        return views


async def insert_call(
    app: FastAPI, owner: Tenant, campaign_id: str, number: str, *, recorded: bool = False
) -> str:
    call_id = new_id("call")
    if recorded:  # a second of silence, where the voice runtime files a recording
        path = recording.file_path(
            app.state.settings.data_dir, owner.user_id, call_id, "mono", "wav"
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        with wave.open(str(path), "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(8000)
            wav.writeframes(bytes(16000))
    async with app.state.sessionmaker() as session, session.begin():
        call = Call(
            id=call_id,
            user_id=owner.user_id,
            campaign_id=campaign_id,
            provider="twilio",
            to_number=number,
            status="completed",
            recording_url=recording.url(call_id, "mono", "wav") if recorded else None,
        )
        session.add(call)
    return call.id


async def build_world(app: FastAPI, owner: Tenant) -> World:
    world = World(owner)
    ids = world.ids
    ids["assistant"] = (await owner.assistant())["id"]
    ids["phone_number"] = (await owner.phone_number("+14155550123"))["id"]
    ids["list"] = (await owner.recipient_list(CSV, name="victims"))["id"]
    ids["spare_assistant"] = (await owner.assistant(name="Spare"))["id"]
    ids["spare_phone_number"] = (await owner.phone_number("+14155550124"))["id"]
    ids["spare_list"] = (await owner.recipient_list(CSV, name="spare"))["id"]
    ids["dnc_number"] = "+14155550190"
    await owner.ok("POST", "/do-not-call", json={"phone_number": ids["dnc_number"]})
    ids["webhook"] = (await owner.ok("POST", "/webhooks", json={"url": HOOK_URL}))["id"]
    ids["spare_webhook"] = (await owner.ok("POST", "/webhooks", json={"url": HOOK_URL}))["id"]
    common = {
        "assistant_id": ids["assistant"],
        "phone_number_id": ids["phone_number"],
        "scheduleStartTime": FAR_FUTURE,
        "recipient_list_id": ids["list"],
    }
    for state in ("draft", "running", "paused"):
        ids[f"{state}_campaign"] = (await owner.campaign(**common))["id"]
    for state, actions in (("running", ["start"]), ("paused", ["start", "pause"])):
        for action in actions:
            await owner.ok("POST", f"/campaign/{ids[f'{state}_campaign']}/{action}")
    ids["call"] = await insert_call(app, owner, ids["draft_campaign"], "+14155550101")
    ids["recorded_call"] = await insert_call(
        app, owner, ids["draft_campaign"], "+14155550102", recorded=True
    )
    chat = {"assistant_id": ids["assistant"], "input": "hello"}
    ids["chat_session"] = (await owner.ok("POST", "/chat", json=chat))["session_id"]
    return world


@pytest.fixture
async def victim(app: FastAPI, other_tenant: Tenant) -> World:
    return await build_world(app, other_tenant)


async def send(intruder: Tenant, method: str, path: str, probe: Probe) -> httpx.Response:
    if probe.csv is not None:
        files = {"file": ("new.csv", io.BytesIO(probe.csv.encode()), "text/csv")}
        return await intruder.request(method, path, files=files)
    if probe.json is not None:
        return await intruder.request(method, path, json=probe.json)
    return await intruder.request(method, path)


def test_every_operation_with_an_id_is_probed() -> None:
    missing = operations_with_an_id() - PROBES.keys()
    assert not missing, f"add a tenancy probe for: {sorted(missing)}"
    stale = PROBES.keys() - operations_with_an_id()
    assert not stale, f"these operations no longer exist: {sorted(stale)}"


@pytest.mark.parametrize(
    ("method", "path"), sorted(PROBES), ids=[" ".join(k) for k in sorted(PROBES)]
)
async def test_another_users_id_is_an_unknown_id(
    tenant: Tenant, victim: World, method: str, path: str
) -> None:
    probe = PROBES[(method, path)]
    real = victim.ids[probe.target]
    before = await victim.snapshot()

    theirs = await send(tenant, method, fill(path, real), probe)
    unknown = await send(tenant, method, fill(path, unknown_like(real)), probe)

    assert theirs.status_code == 404, theirs.text
    assert theirs.json() == unknown.json()
    assert unknown.status_code == 404
    assert await victim.snapshot() == before
    # The very same request succeeds for the owner: the 404 was about ownership alone.
    mine = await send(victim.owner, method, fill(path, real), probe)
    assert mine.status_code in (200, 204), mine.text


async def refused_like_unknown(
    intruder: Tenant, method: str, path: str, body: dict[str, Any], key: str, real: str
) -> None:
    """`body` with another user's id under `key` answers what an unknown id answers: a 404."""
    theirs = await intruder.request(method, path, json={**body, key: real})
    unknown = await intruder.request(method, path, json={**body, key: unknown_like(real)})
    assert theirs.status_code == 404, theirs.text
    assert (theirs.status_code, theirs.json()) == (unknown.status_code, unknown.json())


@pytest.mark.parametrize("key", ["assistant_id", "phone_number_id", "recipient_list_id"])
async def test_campaign_create_refuses_another_users_references(
    tenant: Tenant, victim: World, key: str
) -> None:
    body = {
        "name": "Mine",
        "assistant_id": (await tenant.assistant())["id"],
        "phone_number_id": (await tenant.phone_number())["id"],
        "recipient_list_id": (await tenant.recipient_list(CSV))["id"],
    }
    real = victim.ids[key.removesuffix("_id").replace("recipient_", "")]
    await refused_like_unknown(tenant, "POST", "/campaign", body, key, real)
    assert (await tenant.get("/campaign")).json() == []


async def test_campaign_update_refuses_another_users_list(tenant: Tenant, victim: World) -> None:
    mine = await tenant.campaign()
    path = f"/campaign/{mine['id']}"
    await refused_like_unknown(tenant, "PATCH", path, {}, "recipient_list_id", victim.ids["list"])
    assert (await tenant.get(path)).json() == mine


async def test_phone_numbers_refuse_another_users_assistant(tenant: Tenant, victim: World) -> None:
    real = victim.ids["assistant"]
    mine = await tenant.phone_number()
    path = f"/phone-numbers/{mine['id']}"
    await refused_like_unknown(tenant, "PATCH", path, {}, "assistant_id", real)
    assert (await tenant.get(path)).json() == mine
    body = {"phone_number": "+14155550155", "account_sid": TWILIO_SID, "auth_token": "t"}
    await refused_like_unknown(tenant, "POST", "/phone-numbers", body, "assistant_id", real)
    assert len((await tenant.get("/phone-numbers")).json()) == 1


async def test_assistants_refuse_another_users_phone_number(tenant: Tenant, victim: World) -> None:
    real = victim.ids["phone_number"]
    mine = await tenant.assistant()
    path = f"/assistants/{mine['id']}"
    await refused_like_unknown(tenant, "PUT", path, {}, "phone_number_id", real)
    assert (await tenant.get(path)).json() == mine
    await refused_like_unknown(
        tenant, "POST", "/assistants", {"name": "B"}, "phone_number_id", real
    )
    assert len((await tenant.get("/assistants")).json()) == 1


@pytest.mark.parametrize("key", ["phone_number_id", "assistant_id"])
async def test_a_single_call_refuses_another_users_references(
    tenant: Tenant, victim: World, key: str
) -> None:
    body = {
        "phone_number_id": (await tenant.phone_number())["id"],
        "assistant_id": (await tenant.assistant())["id"],
        "to_number": "+14155550100",
    }
    real = victim.ids[key.removesuffix("_id")]
    await refused_like_unknown(tenant, "POST", "/calls", body, key, real)
    assert (await tenant.get("/calls")).json() == []


@pytest.mark.parametrize("key", ["assistant_id", "session_id"])
async def test_chat_refuses_another_users_references(
    tenant: Tenant, victim: World, key: str
) -> None:
    body = {"assistant_id": (await tenant.assistant())["id"], "input": "hi"}
    real = victim.ids["assistant" if key == "assistant_id" else "chat_session"]
    before = await victim.snapshot()
    await refused_like_unknown(tenant, "POST", "/chat", body, key, real)
    assert await victim.snapshot() == before


async def test_call_filter_on_another_users_campaign_finds_nothing(
    tenant: Tenant, victim: World
) -> None:
    real = victim.ids["draft_campaign"]
    theirs = await tenant.get("/calls", params={"campaign_id": real})
    unknown = await tenant.get("/calls", params={"campaign_id": unknown_like(real)})
    assert theirs.status_code == unknown.status_code == 200
    assert theirs.json() == unknown.json() == []
    assert theirs.headers["x-total-count"] == "0"


@pytest.mark.parametrize("path", LISTS)
async def test_lists_show_only_the_callers_rows(
    app: FastAPI, tenant: Tenant, victim: World, path: str
) -> None:
    mine = await build_world(app, tenant)
    response = await tenant.get(path, params={"limit": 500})
    shown = {row["id"] for row in response.json()}
    assert shown, path
    assert shown <= set(mine.ids.values())
    assert not shown & set(victim.ids.values())
    assert response.headers["x-total-count"] == str(len(shown))


@pytest.mark.parametrize("bad_id", ["", "rl_", "nope", "rl_\u00e9", "rl_" + "0" * 70])
async def test_a_malformed_reference_is_an_unknown_one(tenant: Tenant, bad_id: str) -> None:
    mine = await tenant.campaign()
    body = {k: mine[k] for k in ("name", "assistant_id", "phone_number_id")}
    for method, path, sent in (
        ("POST", "/campaign", body),
        ("PATCH", f"/campaign/{mine['id']}", {}),
    ):
        response = await tenant.request(method, path, json={**sent, "recipient_list_id": bad_id})
        assert response.status_code in (404, 422), response.text
        if response.status_code == 404:
            assert response.json() == {"detail": "Recipient list not found"}
    assert (await tenant.get(f"/campaign/{mine['id']}")).json() == mine


@pytest.mark.parametrize("bad_id", ["", "nope", "asst_" + "0" * 70])
async def test_malformed_links_between_numbers_and_assistants_are_unknown(
    tenant: Tenant, bad_id: str
) -> None:
    number = await tenant.phone_number()
    assistant = await tenant.assistant()
    for method, path, key, what in (
        ("PATCH", f"/phone-numbers/{number['id']}", "assistant_id", "Assistant"),
        ("PUT", f"/assistants/{assistant['id']}", "phone_number_id", "Phone number"),
    ):
        response = await tenant.request(method, path, json={key: bad_id})
        assert response.status_code in (404, 422), response.text
        if response.status_code == 404:
            assert response.json() == {"detail": f"{what} not found"}
    assert (await tenant.get(f"/phone-numbers/{number['id']}")).json() == number
    assert (await tenant.get(f"/assistants/{assistant['id']}")).json() == assistant
