"""Answered calls talk: the simulator's caller joins the media stream, the real Pipecat
pipeline runs with the fake services, and the call ends with its transcript and summary.

Twilio and Vobiz framing, on SQLite and PostgreSQL. A second campaign to the same person
opens with the returning greeting and carries the first call's summary in its context.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select
from tests.dialing import HUMANS_ONLY, Service
from tests.voice import heard_by_caller, talk_campaign, the_call

from outdial.models import CallEvent
from outdial.models.call_event import MEDIA_CLAIM_KEY

SCRIPT = ["I would like the gold plan", "Goodbye"]


@pytest.mark.parametrize("provider", ["twilio", "vobiz"])
async def test_a_human_answer_becomes_a_conversation(service: Service, provider: str) -> None:
    await service.scenario(**HUMANS_ONLY, caller_script=SCRIPT)
    tenant = await service.tenant()
    campaign = await talk_campaign(tenant, provider)
    # The person says goodbye: the assistant's hang-up tool ends the call (test_voice_actions).
    call = await the_call(tenant, campaign["id"], "assistant_hung_up")

    transcript = call["transcript"]
    assert [(turn["role"], turn["text"]) for turn in transcript] == [
        ("assistant", "Hi Ann, this is Ava about your renewal."),
        ("user", "I would like the gold plan"),
        ("assistant", "Thanks, I heard: I would like the gold plan."),
        ("user", "Goodbye"),
        ("assistant", "Thank you for your time. Goodbye!"),
    ]
    assert all(turn["started_at"].endswith("Z") and turn["ended_at"] for turn in transcript)
    assert call["user_messages"] == 2 and call["agent_messages"] == 3
    assert call["summary"] == (
        "The person said: I would like the gold plan / Goodbye. The assistant answered 3 time(s)."
    )
    assert call["status"] == "completed" and call["answered_by"] == "human"
    assert len(call["per_turn_latency"]) == 2
    assert call["latency_metrics"]["turns"] == 2
    assert call["assistant_config"]["opening_message"] == (
        "Hi Ann, this is Ava about your renewal."
    )

    heard = await heard_by_caller(service, call["provider_call_sid"])
    assert heard["stream"] == "connected"
    assert heard["said"] == SCRIPT
    # The caller heard each sentence the assistant spoke (the TTS speaks sentence by sentence).
    spoken = [turn["text"] for turn in transcript if turn["role"] == "assistant"]
    assert " ".join(heard["heard"]) == " ".join(spoken)
    # Vobiz gets a checkpoint behind each utterance, goodbye included; Twilio none.
    checkpoints = [f"utterance-{n}" for n in range(1, len(spoken) + 1)]
    assert heard["checkpoints"] == (checkpoints if provider == "vobiz" else [])
    # The assistant's audio goes out in 80 ms messages on Twilio, 60 ms on Vobiz (its limit).
    assert heard["first_audio_ms"] == (60 if provider == "vobiz" else 80)
    recipients = await tenant.ok("GET", f"/campaign/{campaign['id']}/recipients")
    assert recipients[0]["status"] == "completed"


async def test_the_next_campaign_greets_a_returning_person_with_memory(service: Service) -> None:
    await service.scenario(**HUMANS_ONLY, caller_script=["Call me back in May"])
    tenant = await service.tenant()
    first = await talk_campaign(tenant, "twilio")
    earlier = await the_call(tenant, first["id"])

    second = await talk_campaign(
        tenant,
        "twilio",
        first["phone_number_id"],
        use_returning_greeting=True,
        returning_message_template="Welcome back {{ name }}!",
        use_short_term_summaries=True,
    )
    call = await the_call(tenant, second["id"])
    config = call["assistant_config"]
    assert config["returning_contact"] is True
    assert config["opening_message"] == "Welcome back Ann!"
    assert [s["call_id"] for s in config["earlier_summaries"]] == [earlier["id"]]
    assert earlier["summary"] in config["system_prompt"]
    assert call["transcript"][0] == {**call["transcript"][0], "text": "Welcome back Ann!"}


async def test_a_machine_never_reaches_the_assistant(service: Service) -> None:
    await service.scenario(
        human=0, machine=1, no_answer=0, busy=0, failed=0, caller_script=["Leave a message"]
    )
    tenant = await service.tenant()
    campaign = await talk_campaign(tenant, "vobiz")
    calls = await tenant.ok("GET", "/calls", params={"campaign_id": campaign["id"]})
    call = await tenant.ok("GET", f"/calls/{calls[0]['id']}")
    assert call["answered_by"] == "machine"
    assert call["transcript"] is None and call["assistant_config"] is None
    recipients = await tenant.ok("GET", f"/campaign/{campaign['id']}/recipients")
    assert recipients[0]["status"] == "voicemail"
    # The caller joined the stream at answer, as Vobiz does; the verdict kept it from the
    # assistant: nothing was heard, and the stream never claimed the call.
    heard = await heard_by_caller(service, call["provider_call_sid"])
    assert heard["stream"] in ("refused", "connected") and heard["heard"] == []
    async with service.app.state.sessionmaker() as session:
        claims = await session.scalars(
            select(CallEvent).where(
                CallEvent.call_id == call["id"], CallEvent.dedupe_key == MEDIA_CLAIM_KEY
            )
        )
        assert claims.all() == []
