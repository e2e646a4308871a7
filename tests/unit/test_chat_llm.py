"""The chat turn's LLM choice, without a database: a provider this server has no key for."""

from __future__ import annotations

import pytest

from outdial.chat.service import Turn, answer
from outdial.config import Settings, SpeechKeys
from outdial.errors import Invalid
from outdial.models import ChatSession
from outdial.voice.config import CallContext, resolve


def turn(llm: dict[str, str]) -> Turn:
    config = resolve(CallContext(assistant={"llm": llm}, phone_number=""))
    return Turn(ChatSession(id="chat_1", user_id="u", assistant_id="asst_1"), True, config)


async def test_an_llm_without_a_key_is_a_422_on_the_assistant() -> None:
    settings = Settings(voice_services="real", speech=SpeechKeys())
    with pytest.raises(Invalid) as refused:
        await answer(settings, turn({"llm_provider": "openai", "model": "gpt-4o-mini"}), "hi")
    assert refused.value.detail[0]["loc"] == ["body", "assistant_id"]
    assert "OUTDIAL_SPEECH__OPENAI_API_KEY" in refused.value.detail[0]["msg"]


async def test_a_fake_llm_assistant_answers_even_with_real_services() -> None:
    settings = Settings(voice_services="real", speech=SpeechKeys())
    reply = await answer(settings, turn({"llm_provider": "fake", "model": "fake"}), "hi")
    assert reply.startswith("Thanks, I heard: hi.")
