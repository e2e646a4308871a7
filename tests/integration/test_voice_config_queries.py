"""The earlier-call queries behind the returning greeting and short-term summaries, and the
resolved configuration stored on the call (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI
from tests.support import Tenant

from outdial.ids import new_id
from outdial.models import Call
from outdial.voice import repository, service

START = datetime(2026, 10, 1, 9, 0, tzinfo=UTC)
PERSON = "+14155550142"


async def add_call(app: FastAPI, tenant: Tenant, minutes: int, **fields: Any) -> str:
    values: dict[str, Any] = {
        "id": new_id("call"),
        "user_id": tenant.user_id,
        "provider": "twilio",
        "to_number": PERSON,
        "status": "completed",
        "answered_by": "human",
        "answered_at": START + timedelta(minutes=minutes),
        "ended_at": START + timedelta(minutes=minutes + 1),
        "created_at": START + timedelta(minutes=minutes),
    }
    values.update(fields)
    async with app.state.sessionmaker() as session, session.begin():
        session.add(Call(**values))
    return str(values["id"])


async def test_only_earlier_human_conversations_count(
    app: FastAPI, tenant: Tenant, other_tenant: Tenant
) -> None:
    current = await add_call(app, tenant, 100, status="in_progress", ended_at=None)
    # None of these is an earlier conversation with this person of this account.
    await add_call(app, tenant, 1, answered_by="machine", summary="a voicemail")
    await add_call(app, tenant, 2, status="no_answer", answered_at=None, answered_by=None)
    await add_call(app, tenant, 3, to_number="+14155550143", summary="someone else")
    await add_call(app, other_tenant, 4, summary="another account")
    async with app.state.sessionmaker() as session:
        assert not await repository.has_earlier_conversation(
            session, tenant.user_id, PERSON, current
        )
        assert await repository.earlier_summaries(session, tenant.user_id, PERSON, current, 5) == []
    await add_call(app, tenant, 5, answered_by="unknown")  # undecided verdict: a person, no summary
    async with app.state.sessionmaker() as session:
        assert await repository.has_earlier_conversation(session, tenant.user_id, PERSON, current)
        assert await repository.earlier_summaries(session, tenant.user_id, PERSON, current, 5) == []


async def test_newest_summaries_first_up_to_the_limit(app: FastAPI, tenant: Tenant) -> None:
    current = await add_call(app, tenant, 100, status="in_progress", ended_at=None)
    for minute in (10, 30, 20):
        await add_call(app, tenant, minute, summary=f"talk at {minute}")
    async with app.state.sessionmaker() as session:
        newest = await repository.earlier_summaries(session, tenant.user_id, PERSON, current, 2)
        none = await repository.earlier_summaries(session, tenant.user_id, PERSON, current, 0)
    assert [call.summary for call in newest] == ["talk at 30", "talk at 20"]
    assert newest[0].ended_at == START + timedelta(minutes=31)
    assert none == []


async def test_a_campaign_call_stores_its_resolved_configuration(
    app: FastAPI, tenant: Tenant
) -> None:
    assistant = await tenant.assistant(
        first_message="Hello.", speech_settings={"style": "professional"}
    )
    campaign = await tenant.campaign(
        assistant_id=assistant["id"],
        opening_message_template="Hi {{ name }}, about your renewal.",
        returning_message_template="Welcome back {{ name }}.",
        use_returning_greeting=True,
        use_short_term_summaries=True,
        short_term_summaries_limit=1,
        campaign_context="Renewals close in May.",
        speech_settings={"responsiveness": "instant"},
        recipients=[
            {
                "phone_number": PERSON,
                "metadata": {"name": "Ann"},
                "assistant_overrides": {"voice": {"speed": 1.3}},
            }
        ],
    )
    recipients = await tenant.ok("GET", f"/campaign/{campaign['id']}/recipients")
    recipient_id = int(recipients[0]["id"].removeprefix("rcp_"))
    first = await add_call(
        app,
        tenant,
        200,
        campaign_id=campaign["id"],
        recipient_id=recipient_id,
        assistant_id=assistant["id"],
        status="in_progress",
        ended_at=None,
    )
    async with app.state.sessionmaker() as session, session.begin():
        config = await service.resolve_for_call(session, first)
    assert config is not None
    assert config["opening_message"] == "Hi Ann, about your renewal."
    assert config["speech_settings"]["style"] == "professional"
    assert config["speech_settings"]["responsiveness"] == "instant"
    assert config["voice"]["speed"] == 1.3
    assert config["campaign_context"] == "Renewals close in May."
    assert config["earlier_summaries"] == []
    shown = await tenant.ok("GET", f"/calls/{first}")
    assert shown["assistant_config"] == config

    # The first call ends as a conversation with a summary; the next one builds on it.
    async with app.state.sessionmaker() as session, session.begin():
        await repository.store_conversation(
            session, first, status="completed", ended_at=START, summary="Wants the gold plan."
        )
    second = await add_call(
        app,
        tenant,
        300,
        campaign_id=campaign["id"],
        recipient_id=recipient_id,
        assistant_id=assistant["id"],
        status="in_progress",
        ended_at=None,
    )
    async with app.state.sessionmaker() as session, session.begin():
        again = await service.resolve_for_call(session, second)
    assert again is not None
    assert again["returning_contact"] is True
    assert again["opening_message"] == "Welcome back Ann."
    assert [s["call_id"] for s in again["earlier_summaries"]] == [first]
    assert "Wants the gold plan." in again["system_prompt"]
