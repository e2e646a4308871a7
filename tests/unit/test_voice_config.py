"""A call's resolved configuration: assistant → campaign → recipient, opening message, memory."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from outdial.assistant.schemas import STORED, AssistantConfig
from outdial.voice.config import (
    DEFAULT_RETURNING_TEMPLATE,
    CallContext,
    CampaignSettings,
    EarlierCall,
    merge_overrides,
    resolve,
)

ASSISTANT = {
    "system_instruction": "You remind customers of their renewal.",
    "first_message": "Hello from Acme.",
    "speech_settings": {"style": "friendly", "responsiveness": "relaxed"},
    "voice": {"tts_provider": "fake", "voice_id": "ava"},
    "machine_detection_timeout_seconds": 12,
}
EARLIER = [
    EarlierCall("call_new", datetime(2026, 3, 2, tzinfo=UTC), "Asked to call back in March."),
    EarlierCall("call_mid", datetime(2026, 2, 1, tzinfo=UTC), "Interested in the gold plan."),
    EarlierCall("call_old", datetime(2026, 1, 1, tzinfo=UTC), "First contact."),
]


def context(**fields: object) -> CallContext:
    values: dict[str, object] = {"assistant": ASSISTANT, "phone_number": "+14155550100"}
    values.update(fields)
    return CallContext(**values)  # type: ignore[arg-type]


def test_an_ad_hoc_call_runs_with_its_assistant_and_defaults() -> None:
    config = resolve(context())
    assert config["speech_settings"] == {
        "style": "friendly",
        "responsiveness": "relaxed",
        "interruptions": "on",
        "emotions": "natural",
    }
    assert config["voice"]["voice_id"] == "ava"
    assert config["voice"]["tts_model"] == "sonic-3"  # upstream default filled in
    assert config["machine_detection_timeout_seconds"] == 12
    assert config["opening_message"] == "Hello from Acme."
    assert config["returning_contact"] is False
    assert config["earlier_summaries"] == []
    assert config["campaign_context"] is None
    assert config["system_prompt"].startswith("You remind customers of their renewal.")
    assert "warm, friendly" in config["system_prompt"]


def test_campaign_then_recipient_overrides_win() -> None:
    campaign = CampaignSettings(
        speech_settings={"responsiveness": "instant", "interruptions": "off"},
        campaign_context="Spring renewals: 10% off until May.",
        machine_detection_timeout_seconds=20,
    )
    overrides = {
        "speech_settings": {"interruptions": "on"},
        "voice": {"speed": 1.2},
        "first_message": "Hi!",
    }
    config = resolve(context(campaign=campaign, overrides=overrides))
    assert config["speech_settings"] == {
        "style": "friendly",  # the assistant's
        "responsiveness": "instant",  # the campaign's
        "interruptions": "on",  # the recipient's, over the campaign's "off"
        "emotions": "natural",  # the default
    }
    assert config["voice"] == {**config["voice"], "voice_id": "ava", "speed": 1.2}
    assert config["machine_detection_timeout_seconds"] == 20
    assert config["campaign_context"] == "Spring renewals: 10% off until May."
    assert "Spring renewals: 10% off until May." in config["system_prompt"]
    assert config["opening_message"] == "Hi!"  # no template: the (overridden) first message


def test_the_opening_message_is_rendered_from_metadata() -> None:
    campaign = CampaignSettings(opening_message_template="Hi {{ name | default('there') }}!")
    assert resolve(context(campaign=campaign, metadata={"name": "Ann"}))["opening_message"] == (
        "Hi Ann!"
    )
    assert resolve(context(campaign=campaign))["opening_message"] == "Hi there!"
    uses_number = CampaignSettings(opening_message_template="Calling {{ phone_number }}")
    assert resolve(context(campaign=uses_number))["opening_message"] == "Calling +14155550100"


def test_a_template_that_cannot_render_falls_back_to_the_first_message() -> None:
    campaign = CampaignSettings(opening_message_template="Hi {{ name }}")
    assert resolve(context(campaign=campaign))["opening_message"] == "Hello from Acme."


def test_returning_greeting_only_when_asked_and_returning() -> None:
    template = "Welcome back {{ name }}"
    on = CampaignSettings(
        opening_message_template="Hi {{ name }}",
        use_returning_greeting=True,
        returning_message_template=template,
    )
    off = CampaignSettings(opening_message_template="Hi {{ name }}", use_returning_greeting=False)
    meta = {"name": "Ann"}
    returning = resolve(context(campaign=on, metadata=meta, returning_contact=True))
    assert returning["opening_message"] == "Welcome back Ann"
    assert returning["returning_contact"] is True
    assert resolve(context(campaign=on, metadata=meta))["opening_message"] == "Hi Ann"
    not_asked = resolve(context(campaign=off, metadata=meta, returning_contact=True))
    assert not_asked["opening_message"] == "Hi Ann"
    assert not_asked["returning_contact"] is False


def test_the_default_returning_greeting() -> None:
    campaign = CampaignSettings(use_returning_greeting=True)
    config = resolve(context(campaign=campaign, returning_contact=True))
    assert "Hello again, there!" in config["opening_message"]
    assert "name" in DEFAULT_RETURNING_TEMPLATE
    named = resolve(context(campaign=campaign, returning_contact=True, metadata={"name": "Bo"}))
    assert named["opening_message"].startswith("Hello again, Bo!")


def test_newest_summaries_go_into_the_context_up_to_the_limit() -> None:
    campaign = CampaignSettings(use_short_term_summaries=True, short_term_summaries_limit=2)
    config = resolve(context(campaign=campaign, earlier=EARLIER))
    assert [s["call_id"] for s in config["earlier_summaries"]] == ["call_new", "call_mid"]
    assert config["earlier_summaries"][0]["ended_at"] == "2026-03-02T00:00:00.000000Z"
    prompt = config["system_prompt"]
    assert "Relevant, user-specific context from previous conversations" in prompt
    assert "2026-03-02: Asked to call back in March." in prompt
    assert "First contact." not in prompt
    off = CampaignSettings(use_short_term_summaries=False)
    assert resolve(context(campaign=off, earlier=EARLIER))["earlier_summaries"] == []


def test_an_ad_hoc_call_follows_the_assistants_short_term_memory() -> None:
    assert resolve(context(earlier=EARLIER))["earlier_summaries"] == []
    remembering = {**ASSISTANT, "short_term_memory": {"enabled": True, "search_limit": 1}}
    config = resolve(context(assistant=remembering, earlier=EARLIER))
    assert [s["call_id"] for s in config["earlier_summaries"]] == ["call_new"]


_VALUES = st.one_of(st.integers(), st.text(max_size=5), st.booleans())
_NESTED = st.dictionaries(st.sampled_from(["a", "b", "c"]), _VALUES, max_size=3)


@given(
    base=st.dictionaries(st.sampled_from(["voice", "llm", "first_message"]), _NESTED, max_size=3),
    overrides=st.dictionaries(
        st.sampled_from(["voice", "llm", "first_message"]), _NESTED, max_size=3
    ),
)
def test_overrides_merge_nested_objects_and_replace_the_rest(
    base: dict[str, dict[str, object]], overrides: dict[str, dict[str, object]]
) -> None:
    merged = merge_overrides(base, overrides)
    assert set(merged) == set(base) | set(overrides)
    for name, value in merged.items():
        if name not in overrides:
            assert value == base[name]
        elif name == "first_message":  # not a nested object: replaced whole
            assert value == overrides[name]
        else:
            assert value == {**base.get(name, {}), **overrides[name]}


def test_a_stored_webhook_url_is_read_as_stored_but_a_given_one_is_checked() -> None:
    """A configuration stored before `webhook_url` was checked still resolves."""
    legacy = {"call_actions": {"webhook_url": "not a url"}}
    stored = AssistantConfig.model_validate(legacy, context=STORED)
    assert stored.call_actions.webhook_url == "not a url"
    with pytest.raises(ValidationError):
        AssistantConfig.model_validate(legacy)
