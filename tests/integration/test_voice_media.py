"""Who may open a call's media stream: the right secret, once, for a person on the line.

Streams are opened here by the simulator's caller against calls written straight into the
database with a known secret (the dialer never reveals one). A refused stream changes
nothing on its call.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from tests.conftest import POSTGRES_URL
from tests.dialing import Service, fresh_database, running_service, wait_for
from tests.receiver import receiving
from tests.support import Tenant

from outdial.database import write_transaction
from outdial.dialer import store
from outdial.ids import new_id
from outdial.models import Call, CallEvent, WebhookDelivery, utcnow
from outdial.telephony.base import CallState
from outdial.telephony.simulator import caller
from outdial.voice import repository as voice_repository
from outdial.voice import service as voice_service
from outdial.voice.pipeline import Conversation
from outdial.webhook import events as webhook_events

SECRET = "s3cret-for-this-call"


@pytest.fixture
async def service(backend: str, tmp_path: Path) -> AsyncIterator[Service]:
    """The real server, its reaper patient with the calls written here: they have no
    provider to ask, and a silent one would be ended `lost` while its stream is tested."""
    async with (
        fresh_database(backend, tmp_path, POSTGRES_URL) as url,
        running_service(url, tmp_path / "data", dialer_silence_seconds=600) as running,
    ):
        yield running


async def live_call(
    service: Service,
    provider: str,
    assistant_fields: Any = None,
    tenant: Tenant | None = None,
    **fields: Any,
) -> str:
    tenant = tenant or await service.tenant()
    assistant = await tenant.assistant(
        **{"first_message": "Hello, this is Ava.", **(assistant_fields or {})}
    )
    values: dict[str, Any] = {
        "id": new_id("call"),
        "user_id": tenant.user_id,
        "assistant_id": assistant["id"],
        "provider": provider,
        "to_number": "+14155550190",
        "status": "in_progress",
        "answered_by": "human",
        "secret_hash": hashlib.sha256(SECRET.encode()).hexdigest(),
    }
    values.update(fields)
    async with write_transaction(service.app.state.sessionmaker) as session:
        session.add(Call(**values))
    return str(values["id"])


def stream(service: Service, provider: str, call_id: str, secret: str) -> caller.Stream:
    base = service.base_url.replace("http://", "ws://") + f"/telephony/{provider}/media"
    if provider == "twilio":
        return caller.Stream(base, {"call_id": call_id, "secret": secret})
    return caller.Stream(f"{base}/{call_id}/{secret}")


async def talk(
    service: Service, provider: str, call_id: str, secret: str = SECRET, script: Any = ()
) -> caller.Conversation:
    return await caller.converse(
        provider,
        stream(service, provider, call_id, secret),
        "CA0123",
        "AC0123",
        list(script),
        asyncio.Event(),
    )


async def provider_ends(service: Service, call_id: str, state: str = "completed") -> None:
    """What the provider's final callback does to the call (as the webhook applies it)."""
    async with write_transaction(service.app.state.sessionmaker) as session:
        call = await store.lock_call(session, call_id)
        assert call is not None
        assert await store.finish_call(session, call, CallState(state), utcnow())


async def ended_reason(service: Service, call_id: str) -> str | None:
    async with service.app.state.sessionmaker() as session:
        return await session.scalar(select(Call.ended_reason).where(Call.id == call_id))


@pytest.mark.parametrize("talk_first", [True, False])
async def test_the_conversation_names_what_ended_it_whichever_comes_first(
    service: Service, talk_first: bool
) -> None:
    """The stream's end and the provider's final callback race; either way the call's
    ended_reason is the conversation's, at once, without waiting for the other."""
    sessionmaker = service.app.state.sessionmaker
    person = await live_call(service, "twilio")
    if talk_first:
        await voice_service.talk_ended(sessionmaker, person, "assistant_hung_up")
        assert await ended_reason(service, person) is None  # the call is still live
        await provider_ends(service, person)
    else:
        await provider_ends(service, person)
        assert await ended_reason(service, person) == "completed"
        await voice_service.talk_ended(sessionmaker, person, "assistant_hung_up")
    assert await ended_reason(service, person) == "assistant_hung_up"

    # A call that did not end as a conversation keeps the provider's reason, in either order.
    for state, answered_by in (("failed", "human"), ("completed", "machine")):
        other = await live_call(service, "twilio", answered_by=answered_by)
        if talk_first:
            await voice_service.talk_ended(sessionmaker, other, "customer_hung_up")
            await provider_ends(service, other, state)
        else:
            await provider_ends(service, other, state)
            await voice_service.talk_ended(sessionmaker, other, "customer_hung_up")
        assert await ended_reason(service, other) not in (None, "customer_hung_up")


@pytest.mark.parametrize("callback_first", [True, False])
async def test_call_ended_carries_the_conversation_whichever_comes_first(
    service: Service, callback_first: bool
) -> None:
    """A call that talked: its `call.ended` webhook waits for the conversation (summary, end
    reason) when the provider's final callback comes first, and goes out with it."""
    sessionmaker = service.app.state.sessionmaker
    tenant = await service.tenant()
    conversation = Conversation()
    conversation.end("customer_hung_up")
    async with receiving() as receiver:
        await tenant.ok("POST", "/webhooks", json={"url": receiver.url, "events": ["call.ended"]})
        call_id = await live_call(service, "twilio", tenant=tenant)
        async with write_transaction(sessionmaker) as session:
            assert await voice_repository.claim_media(session, call_id, "MZ0123")
        if callback_first:
            await provider_ends(service, call_id)
            async with sessionmaker() as session:
                waiting = await session.scalar(select(WebhookDelivery.next_attempt_at))
            assert waiting is not None
            assert (waiting - utcnow()).total_seconds() > 30  # held for the conversation
        await voice_service.talk_ended(sessionmaker, call_id, conversation.ended_reason or "")
        await voice_service.record(sessionmaker, call_id, conversation, "They want gold.")
        if not callback_first:
            await provider_ends(service, call_id)
        (received,) = await receiver.wait_for(1, timeout=15)
    event = received.json()
    assert event["type"] == "call.ended"
    assert event["id"] == webhook_events.call_ended_event_id(call_id)
    assert event["data"]["summary"] == "They want gold."
    assert event["data"]["ended_reason"] == "customer_hung_up"


async def snapshot(service: Service, call_id: str) -> tuple[Any, ...]:
    async with service.app.state.sessionmaker() as session:
        call = await session.get(Call, call_id)
        events = await session.scalar(
            select(func.count()).select_from(CallEvent).where(CallEvent.call_id == call_id)
        )
    assert call is not None
    return (call.updated_at, call.assistant_config, call.transcript, call.status, events)


@pytest.mark.parametrize("provider", ["twilio", "vobiz"])
async def test_a_wrong_secret_is_refused_and_changes_nothing(
    service: Service, provider: str
) -> None:
    call_id = await live_call(service, provider)
    before = await snapshot(service, call_id)
    heard = await talk(service, provider, call_id, secret="not-the-secret")
    assert heard.stream == "refused" and heard.heard == []
    other = await live_call(service, "vobiz" if provider == "twilio" else "twilio")
    assert (await talk(service, provider, other)).stream == "refused"  # other provider's call
    assert (await talk(service, provider, "call_doesnotexist")).stream == "refused"
    assert await snapshot(service, call_id) == before


@pytest.mark.parametrize("provider", ["twilio", "vobiz"])
async def test_the_right_secret_talks_once(service: Service, provider: str) -> None:
    call_id = await live_call(service, provider)
    first = await talk(service, provider, call_id, script=["Hi there"])
    assert first.stream == "connected"
    assert " ".join(first.heard) == "Hello, this is Ava. Thanks, I heard: Hi there."

    async def stored() -> Any:
        async with service.app.state.sessionmaker() as session:
            call = await session.get(Call, call_id)
        return call if call is not None and call.summary else None

    call = await wait_for(stored, timeout=15)
    await provider_ends(service, call_id)
    assert call.user_messages == 1 and call.agent_messages == 2
    assert call.assistant_config["opening_message"] == "Hello, this is Ava."
    before = await snapshot(service, call_id)
    again = await talk(service, provider, call_id, script=["Me again"])
    assert again.stream == "refused" and again.heard == []
    assert await snapshot(service, call_id) == before


@pytest.mark.parametrize(
    ("provider", "fields"),
    [
        ("twilio", {"answered_by": "machine"}),
        ("vobiz", {"answered_by": "machine"}),
        ("twilio", {"status": "ringing", "answered_by": None}),
        ("twilio", {"status": "completed"}),
    ],
)
async def test_no_stream_without_a_person_on_the_line(
    service: Service, provider: str, fields: dict[str, Any]
) -> None:
    call_id = await live_call(service, provider, **fields)
    before = await snapshot(service, call_id)
    heard = await talk(service, provider, call_id, script=["Anyone there?"])
    assert heard.stream == "refused" and heard.heard == []
    assert await snapshot(service, call_id) == before


async def test_vobiz_waits_for_the_verdict_before_speaking(service: Service) -> None:
    """Vobiz opens the stream before its machine verdict: the assistant waits for it."""
    call_id = await live_call(service, "vobiz", answered_by=None)

    async def verdict_after(seconds: float, which: str, verdict: str) -> None:
        await asyncio.sleep(seconds)
        async with write_transaction(service.app.state.sessionmaker) as session:
            call = await session.get(Call, which)
            assert call is not None
            call.answered_by = verdict

    machine = asyncio.create_task(verdict_after(0.5, call_id, "machine"))
    heard = await talk(service, "vobiz", call_id, script=["Beep"])
    await machine
    assert heard.stream == "refused" and heard.heard == []

    person = await live_call(service, "vobiz", answered_by=None, to_number="+14155550191")
    human = asyncio.create_task(verdict_after(0.5, person, "human"))
    started = asyncio.get_running_loop().time()
    heard = await talk(service, "vobiz", person, script=["Hello?"])
    await human
    assert heard.stream == "connected"
    assert heard.heard == ["Hello, this is Ava.", "Thanks, I heard: Hello."]
    # The verdict, not the end of the detection window (11 s here), let the assistant speak.
    assert asyncio.get_running_loop().time() - started < 8
    await provider_ends(service, person)


LONG_OPENING = "Hello, this is Ava calling about your renewal. " * 6  # ~2.8 s of speech


@pytest.mark.parametrize("interruptions", ["on", "off"])
async def test_barge_in_follows_the_interruptions_setting(
    service: Service, interruptions: str
) -> None:
    """The caller speaks over the opening: with interruptions on, the queued audio is
    cleared and the opening is cut short; with them off, it plays to the end."""
    call_id = await live_call(
        service,
        "twilio",
        {"first_message": LONG_OPENING, "speech_settings": {"interruptions": interruptions}},
    )
    from websockets.asyncio.client import connect

    conversation = caller.Conversation()
    url = stream(service, "twilio", call_id, SECRET)
    async with connect(url.url) as socket:
        line = caller.Line(socket, "twilio", "MZ1")
        for message in caller.start_messages("twilio", url, "CA1", "AC1", "MZ1"):
            await line.send_json(message)
        tasks = [asyncio.create_task(line.pace()), asyncio.create_task(line.listen(conversation))]
        await wait_for(lambda: _heard_something(conversation), timeout=10, every=0.02)
        line.speak("Sorry, can I stop you there?")  # barely a second into the opening
        await line.answered(conversation, 1, 10)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    full = len(LONG_OPENING) * 0.01
    if interruptions == "on":
        assert conversation.clears >= 1
        assert conversation.heard[-1] == "Thanks, I heard: Sorry, can I stop you there."
        opening_audio = conversation.audio_seconds - len(conversation.heard[-1]) * 0.01
        assert opening_audio < full - 0.5
    else:
        assert conversation.clears == 0
        assert conversation.audio_seconds >= full
    await provider_ends(service, call_id)


async def _heard_something(conversation: caller.Conversation) -> bool:
    return bool(conversation.heard)


@pytest.mark.parametrize("provider", ["twilio", "vobiz"])
async def test_a_caller_hanging_up_mid_sentence_ends_the_conversation_cleanly(
    service: Service, provider: str
) -> None:
    call_id = await live_call(service, provider, {"first_message": LONG_OPENING})
    from websockets.asyncio.client import connect

    conversation = caller.Conversation()
    url = stream(service, provider, call_id, SECRET)
    async with connect(url.url) as socket:
        line = caller.Line(socket, provider, "S1")
        for message in caller.start_messages(provider, url, "CA1", "AC1", "S1"):
            await line.send_json(message)
        listening = asyncio.create_task(line.listen(conversation))
        await wait_for(lambda: _heard_something(conversation), timeout=10, every=0.02)
        listening.cancel()  # hang up while the assistant is still talking
        await asyncio.gather(listening, return_exceptions=True)

    async def stored() -> Any:
        async with service.app.state.sessionmaker() as session:
            call = await session.get(Call, call_id)
        return call if call is not None and call.summary else None

    call = await wait_for(stored, timeout=15)
    assert call.agent_messages == 1 and call.user_messages == 0
    assert call.transcript[0]["role"] == "assistant"
    assert call.summary == "The assistant spoke 1 time(s); the person said nothing."
    await provider_ends(service, call_id)

    async def refined() -> Any:
        async with service.app.state.sessionmaker() as session:
            ended = await session.get(Call, call_id)
        return ended if ended is not None and ended.ended_reason == "customer_hung_up" else None

    await wait_for(refined, timeout=5)
