"""The configuration one call runs with: assistant, then campaign, then recipient overrides.

Pure functions: the caller reads the rows (`voice/repository.py`) and stores the result on
the call as `assistant_config`, so a user can see exactly what the agent was told.

Precedence, lowest first:
1. the assistant's stored configuration (with upstream's defaults for anything unset);
2. the campaign: `speech_settings` (each key given), `campaign_context`,
   `machine_detection_timeout_seconds`;
3. the recipient's `assistant_overrides` (top-level fields replace, nested objects merge
   key by key, as `PUT /assistants/{id}` does).

On top of that the call gets its opening message (the campaign's template rendered with the
recipient's metadata, or the returning greeting), whether the person is a returning contact,
and the newest earlier summaries when short-term summaries are on.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from outdial.assistant.schemas import NESTED_FIELDS, STORED, AssistantConfig
from outdial.schemas import format_timestamp
from outdial.templates import TemplateProblem, compile_template, render, variables_for

log = logging.getLogger("outdial.voice")

DEFAULT_AMD_TIMEOUT = 30
DEFAULT_RETURNING_TEMPLATE = (
    "Hello again, {{ name | default('there') }}! Good to speak with you again."
)
STYLE_LINES = {
    "neutral": "",
    "professional": "Speak in a professional, courteous and concise manner.",
    "friendly": "Speak in a warm, friendly and upbeat manner.",
}
EMOTION_LINES = {
    "natural": "Let natural emotion show in your voice where it fits the conversation.",
    "off": "Keep an even, neutral delivery without emotional colouring.",
}
VOICE_RULES = (
    "You are speaking on a phone call: answer in short spoken sentences, without lists, "
    "markdown or emoji."
)


@dataclass(frozen=True)
class CampaignSettings:
    """The campaign fields that shape a call's configuration."""

    speech_settings: Mapping[str, Any] = field(default_factory=dict)
    campaign_context: str | None = None
    machine_detection_timeout_seconds: int | None = None
    opening_message_template: str | None = None
    returning_message_template: str | None = None
    use_returning_greeting: bool = False
    use_short_term_summaries: bool = False
    short_term_summaries_limit: int = 3


@dataclass(frozen=True)
class EarlierCall:
    """A summary of an earlier human-answered call to the same person."""

    call_id: str
    ended_at: datetime | None
    summary: str


@dataclass(frozen=True)
class CallContext:
    """Everything resolution reads, gathered from the database by the caller."""

    assistant: Mapping[str, Any]
    phone_number: str
    campaign: CampaignSettings | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    overrides: Mapping[str, Any] = field(default_factory=dict)
    returning_contact: bool = False
    earlier: Sequence[EarlierCall] = ()


def merge_overrides(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Top-level fields replace; nested objects (`voice`, `speech_settings`, …) merge by key."""
    merged = dict(base)
    for name, value in overrides.items():
        if name in NESTED_FIELDS and isinstance(value, Mapping):
            merged[name] = {**dict(merged.get(name) or {}), **value}
        else:
            merged[name] = value
    return merged


def summaries_wanted(context: CallContext) -> int:
    """How many earlier summaries go into the context (0: none).

    A campaign decides with `use_short_term_summaries` / `short_term_summaries_limit`; an
    ad-hoc call follows its assistant's `short_term_memory`.
    """
    campaign = context.campaign
    if campaign is not None:
        return campaign.short_term_summaries_limit if campaign.use_short_term_summaries else 0
    memory = AssistantConfig.model_validate(context.assistant, context=STORED).short_term_memory
    return memory.search_limit if memory.enabled else 0


def opening_message(config: AssistantConfig, context: CallContext, returning: bool) -> str:
    """The first thing the assistant says: returning greeting, campaign template, or its own.

    Templates were checked for every recipient when the campaign started; a failure here
    (metadata cannot change since) falls back to the assistant's `first_message`.
    """
    campaign = context.campaign
    source: str | None = None
    if campaign is not None and returning:
        source = campaign.returning_message_template or DEFAULT_RETURNING_TEMPLATE
    elif campaign is not None:
        source = campaign.opening_message_template
    if not source:
        return config.first_message
    try:
        return render(
            compile_template(source), variables_for(context.phone_number, context.metadata)
        )
    except TemplateProblem as exc:
        log.warning(
            "opening message for %s fell back to first_message: %s", context.phone_number, exc
        )
        return config.first_message


def system_prompt(
    config: AssistantConfig, campaign_context: str | None, earlier: Sequence[EarlierCall]
) -> str:
    """The system message: instruction, guardrails, speech style, campaign context, memory."""
    speech = config.speech_settings
    parts = [
        config.system_instruction.strip(),
        (config.guardrails or "").strip(),
        VOICE_RULES,
        STYLE_LINES[speech.style],
        EMOTION_LINES[speech.emotions],
    ]
    if campaign_context and campaign_context.strip():
        parts.append("Campaign context:\n" + campaign_context.strip())
    if earlier:
        lines = "\n".join(
            f"- {call.ended_at.date().isoformat() if call.ended_at else 'earlier'}: {call.summary}"
            for call in earlier
        )
        parts.append(config.long_term_memory.system_prompt.strip() + "\n" + lines)
    return "\n\n".join(part for part in parts if part)


def resolve(context: CallContext) -> dict[str, Any]:
    """The resolved configuration, as stored on the call and given to the voice pipeline."""
    layered = dict(context.assistant)
    campaign = context.campaign
    if campaign is not None:
        speech = {**dict(layered.get("speech_settings") or {}), **dict(campaign.speech_settings)}
        layered["speech_settings"] = speech
        if campaign.machine_detection_timeout_seconds is not None:
            layered["machine_detection_timeout_seconds"] = (
                campaign.machine_detection_timeout_seconds
            )
    merged = merge_overrides(layered, context.overrides)
    config = AssistantConfig.model_validate(merged, context=STORED)
    returning = bool(campaign and campaign.use_returning_greeting and context.returning_contact)
    earlier = list(context.earlier[: summaries_wanted(context)])
    campaign_context = campaign.campaign_context if campaign is not None else None
    resolved = config.model_dump(mode="json")
    resolved.update(
        machine_detection_timeout_seconds=(
            config.machine_detection_timeout_seconds or DEFAULT_AMD_TIMEOUT
        ),
        campaign_context=campaign_context,
        opening_message=opening_message(config, context, returning),
        returning_contact=returning,
        earlier_summaries=[
            {
                "call_id": call.call_id,
                "ended_at": format_timestamp(call.ended_at) if call.ended_at else None,
                "summary": call.summary,
            }
            for call in earlier
        ],
        system_prompt=system_prompt(config, campaign_context, earlier),
    )
    return resolved
