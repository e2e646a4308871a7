"""`POST /chat` and `GET /chat/{session_id}`: a text conversation with an assistant.

The fake LLM (offline) answers `Thanks, I heard: <input>.`, then lists the earlier user
messages it was given and the first line of its system prompt, so a reply shows what the
assistant saw.
"""

from __future__ import annotations

from typing import Any

import pytest
from tests.support import Tenant

from outdial.chat.schemas import MAX_INPUT
from outdial.chat.service import HISTORY_TURNS

INSTRUCTION = "You are Ava from Acme Renewals."


async def say(tenant: Tenant, assistant_id: str, text: str, session_id: str | None = None) -> Any:
    body = {"assistant_id": assistant_id, "input": text}
    if session_id is not None:
        body["session_id"] = session_id
    return await tenant.ok("POST", "/chat", json=body)


async def test_a_two_turn_conversation_keeps_its_history_and_prompt(tenant: Tenant) -> None:
    assistant = await tenant.assistant(system_instruction=INSTRUCTION)
    first = await say(tenant, assistant["id"], "My name is Ann")
    assert set(first) == {"output_type", "output", "session_id"}
    assert first["output_type"] == "text"
    assert first["session_id"].startswith("chat_")
    assert first["output"] == f"Thanks, I heard: My name is Ann. My instructions: {INSTRUCTION}"

    second = await say(tenant, assistant["id"], "When does it renew?", first["session_id"])
    assert second["session_id"] == first["session_id"]
    assert second["output"] == (
        "Thanks, I heard: When does it renew. Earlier you said: My name is Ann. "
        f"My instructions: {INSTRUCTION}"
    )

    stored = await tenant.ok("GET", f"/chat/{first['session_id']}")
    assert stored["assistant_id"] == assistant["id"]
    assert stored["turns"] == 2
    assert [(m["role"], m["text"]) for m in stored["messages"]] == [
        ("user", "My name is Ann"),
        ("assistant", first["output"]),
        ("user", "When does it renew?"),
        ("assistant", second["output"]),
    ]
    assert all(m["created_at"].endswith("Z") for m in stored["messages"])


async def test_the_prompt_is_the_one_a_call_gets(tenant: Tenant) -> None:
    """Guardrails and speech rules come from `voice.config`, as for a call."""
    assistant = await tenant.assistant(system_instruction="", guardrails="Never quote prices.")
    reply = await say(tenant, assistant["id"], "Hello")
    assert reply["output"].endswith("My instructions: Never quote prices.")


async def test_a_missing_session_id_starts_a_new_session(tenant: Tenant) -> None:
    assistant = await tenant.assistant()
    one = await say(tenant, assistant["id"], "First")
    two = await say(tenant, assistant["id"], "Second")
    assert one["session_id"] != two["session_id"]
    assert "Earlier you said" not in two["output"]
    for reply in (one, two):
        assert (await tenant.ok("GET", f"/chat/{reply['session_id']}"))["turns"] == 1


async def test_only_the_newest_turns_are_given_to_the_llm(tenant: Tenant) -> None:
    assistant = await tenant.assistant()
    session_id = None
    for n in range(HISTORY_TURNS + 1):
        session_id = (await say(tenant, assistant["id"], f"m{n}", session_id))["session_id"]
    reply = await say(tenant, assistant["id"], "last", session_id)
    earlier = reply["output"].split("Earlier you said: ")[1].split(".")[0].split(" / ")
    assert earlier == [f"m{n}" for n in range(1, HISTORY_TURNS + 1)]
    assert (await tenant.ok("GET", f"/chat/{session_id}"))["turns"] == HISTORY_TURNS + 2


async def test_another_users_session_is_an_unknown_session(
    tenant: Tenant, other_tenant: Tenant
) -> None:
    theirs_assistant = await other_tenant.assistant()
    theirs = await say(other_tenant, theirs_assistant["id"], "secret")
    mine = await tenant.assistant()
    unknown = "chat_" + "0" * 20
    for session_id in (theirs["session_id"], unknown):
        body = {"assistant_id": mine["id"], "input": "hi", "session_id": session_id}
        response = await tenant.post("/chat", json=body)
        assert (response.status_code, response.json()) == (
            404,
            {"detail": "Chat session not found"},
        )
        response = await tenant.get(f"/chat/{session_id}")
        assert (response.status_code, response.json()) == (
            404,
            {"detail": "Chat session not found"},
        )
    # Their assistant is unknown to me too, and their session is unchanged.
    response = await tenant.post(
        "/chat", json={"assistant_id": theirs_assistant["id"], "input": "x"}
    )
    assert (response.status_code, response.json()) == (404, {"detail": "Assistant not found"})
    assert (await other_tenant.ok("GET", f"/chat/{theirs['session_id']}"))["turns"] == 1


async def test_a_session_stays_with_its_assistant(tenant: Tenant) -> None:
    ava = await tenant.assistant(name="Ava")
    bo = await tenant.assistant(name="Bo")
    started = await say(tenant, ava["id"], "hi")
    body = {"assistant_id": bo["id"], "input": "hi", "session_id": started["session_id"]}
    response = await tenant.post("/chat", json=body)
    assert response.status_code == 409
    assert response.json() == {"detail": "This chat session belongs to another assistant"}
    assert (await tenant.ok("GET", f"/chat/{started['session_id']}"))["turns"] == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"input": "hi"}, "assistant_id"),
        ({"assistant_id": "A"}, "input"),
        ({"assistant_id": "A", "input": ""}, "input"),
        ({"assistant_id": "A", "input": "  \n "}, "input"),
        ({"assistant_id": "A", "input": "x" * (MAX_INPUT + 1)}, "input"),
        ({"assistant_id": "A", "input": "a\x00b"}, "input"),
        ({"assistant_id": "A", "input": 42}, "input"),
        ({"assistant_id": "A", "input": "hi", "session_id": 7}, "session_id"),
        ({"assistant_id": "A", "input": "hi", "input_kind": "text"}, "input_kind"),
    ],
)
async def test_bad_bodies_are_422s_naming_the_field(
    tenant: Tenant, body: dict[str, Any], field: str
) -> None:
    assistant = await tenant.assistant()
    sent = {k: assistant["id"] if v == "A" else v for k, v in body.items()}
    response = await tenant.post("/chat", json=sent)
    assert response.status_code == 422, response.text
    assert ["body", field] in [problem["loc"][:2] for problem in response.json()["detail"]]


@pytest.mark.parametrize(
    "text", ["\u00e9\u00e8 \U0001f600", "bye", "'; DROP TABLE chat_messages; --", "x" * MAX_INPUT]
)
async def test_odd_input_is_answered(tenant: Tenant, text: str) -> None:
    assistant = await tenant.assistant()
    reply = await say(tenant, assistant["id"], text)
    stored = await tenant.ok("GET", f"/chat/{reply['session_id']}")
    assert stored["messages"][0]["text"] == text


@pytest.mark.parametrize("session_id", ["", "nope", "chat_" + "0" * 70, "asst_123", "\u00e9"])
async def test_malformed_session_ids_are_unknown(tenant: Tenant, session_id: str) -> None:
    assistant = await tenant.assistant()
    body = {"assistant_id": assistant["id"], "input": "hi", "session_id": session_id}
    response = await tenant.post("/chat", json=body)
    assert (response.status_code, response.json()) == (404, {"detail": "Chat session not found"})


async def test_chat_needs_credentials(tenant: Tenant) -> None:
    assistant = await tenant.assistant()
    body = {"assistant_id": assistant["id"], "input": "hi"}
    response = await tenant.http.post("/chat", json=body)
    assert response.status_code == 401
    assert (await tenant.http.get("/chat/chat_" + "0" * 20)).status_code == 401
