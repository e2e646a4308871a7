"""Voicemail drop: the campaign's message, rendered for its recipient, left after the beep.

When an answering machine takes a campaign call whose campaign has a
`voicemail_message_template`, the provider speaks the rendered message once the greeting is
over and hangs up; without a template (or with one that renders to nothing) the call is
just hung up. The assistant never speaks to a machine.

- Twilio: `MachineDetection=DetectMessageEnd` gives the verdict with the answer request only
  after the greeting ended (`AnsweredBy=machine_end_beep|_silence|_other`), so the answer
  TwiML is `<Say>` of the message then `<Hangup/>`. A fax (or any other machine verdict)
  only gets `<Hangup/>`.
- Vobiz: the verdict comes on its own callback while the greeting may still play; the call's
  A-leg is transferred to our signed `/voicemail` callback, which answers `<Wait>` for 2 s of
  quiet (the greeting and beep are over), `<Speak>`, `<Hangup/>`.

The provider's own text-to-speech says the message in its default voice: the assistant's
voice (a Cartesia, Deepgram, … voice id) means nothing to `<Say>`/`<Speak>`. The language is
the assistant's `voice.language` (a recipient's override first) as a locale (`en` → `en-US`).
"""

from __future__ import annotations

import logging
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from outdial.models import Assistant, Call, Campaign, CampaignRecipient
from outdial.templates import TemplateProblem, compile_template, render, variables_for

log = logging.getLogger("outdial.telephony")

MAX_MESSAGE_CHARS = 1000  # about a minute of speech; answering machines stop recording soon after
DEFAULT_LANGUAGE = "en-US"
# Vobiz: end the wait at the first 2 s of quiet after the greeting and beep, at the latest
# after BEEP_WAIT_SECONDS (its `length` must exceed `minSilence` for the silence check to work).
BEEP_SILENCE_MS = 2000
BEEP_WAIT_SECONDS = 30
XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>'
# A bare language code becomes the locale both providers' default voices speak it in.
LOCALES = {
    "da": "da-DK",
    "de": "de-DE",
    "en": "en-US",
    "es": "es-ES",
    "fr": "fr-FR",
    "hi": "hi-IN",
    "it": "it-IT",
    "ja": "ja-JP",
    "nl": "nl-NL",
    "pl": "pl-PL",
    "pt": "pt-BR",
    "ru": "ru-RU",
    "sv": "sv-SE",
}
_LANGUAGE = re.compile(r"([A-Za-z]{2,3})(?:[-_]([A-Za-z]{2}))?")
# Characters XML 1.0 cannot carry at all (most C0 controls, lone surrogates, U+FFFE/FFFF).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@dataclass(frozen=True)
class Voicemail:
    """The message to leave, ready to put into a provider document."""

    text: str
    language: str = DEFAULT_LANGUAGE


@dataclass(frozen=True)
class Source:
    """What a call's voicemail is made of, read in one query."""

    phone_number_id: str | None
    to_number: str
    template: str | None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    assistant: Mapping[str, Any] = field(default_factory=dict)
    overrides: Mapping[str, Any] = field(default_factory=dict)


async def load(session: AsyncSession, call_id: str) -> Source | None:
    """The call's number, its campaign's template, its recipient and its assistant (one query)."""
    query = (
        select(
            Call.phone_number_id,
            Call.to_number,
            Campaign.voicemail_message_template,
            CampaignRecipient.recipient_metadata,
            CampaignRecipient.assistant_overrides,
            Assistant.config,
        )
        .select_from(Call)
        .outerjoin(Campaign, Campaign.id == Call.campaign_id)
        .outerjoin(CampaignRecipient, CampaignRecipient.id == Call.recipient_id)
        .outerjoin(Assistant, Assistant.id == Call.assistant_id)
        .where(Call.id == call_id)
    )
    row = (await session.execute(query)).first()
    if row is None:
        return None
    number_id, to_number, template, metadata, overrides, assistant = row
    return Source(number_id, to_number, template, metadata or {}, assistant or {}, overrides or {})


def message(source: Source) -> Voicemail | None:
    """The rendered message, or None: no template, or it renders to nothing (or fails).

    Templates were rendered for every recipient when the campaign started, and metadata
    cannot change since, so a failure here is unexpected: logged, and the call hangs up.
    """
    if not source.template:
        return None
    try:
        rendered = render(
            compile_template(source.template), variables_for(source.to_number, source.metadata)
        )
    except TemplateProblem as exc:
        log.warning("voicemail for %s not left: %s", source.to_number, exc)
        return None
    text = cut(speakable(rendered), MAX_MESSAGE_CHARS)
    if not text:
        return None
    return Voicemail(text, locale(_language(source.overrides) or _language(source.assistant)))


def _language(config: Mapping[str, Any]) -> str | None:
    voice = config.get("voice")
    language = voice.get("language") if isinstance(voice, Mapping) else None
    return language if isinstance(language, str) and language else None


def locale(language: str | None) -> str:
    """A provider locale: `en` → `en-US`, `en_gb` → `en-GB`; anything unknown → en-US."""
    match = _LANGUAGE.fullmatch((language or "").strip())
    if match is None:
        return DEFAULT_LANGUAGE
    code, region = match.group(1).lower(), match.group(2)
    if region:
        return f"{code}-{region.upper()}"
    return LOCALES.get(code, DEFAULT_LANGUAGE)


def speakable(text: str) -> str:
    """The text without characters XML cannot carry, its whitespace runs made single spaces."""
    return " ".join(_NOT_XML.sub(" ", text).split())


def cut(text: str, limit: int) -> str:
    """At most `limit` characters, cut at the last space when there is one in the second half."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    space = head.rfind(" ")
    return (head[:space] if space > limit // 2 else head).rstrip()


def twiml(voicemail: Voicemail | None) -> str:
    """Twilio's answer for a machine: the message (if any), then hang up. The SDK escapes it."""
    from twilio.twiml.voice_response import VoiceResponse

    response = VoiceResponse()
    if voicemail is not None:
        response.say(voicemail.text, language=voicemail.language)
    response.hangup()
    return str(response)


def vobiz_xml(voicemail: Voicemail | None) -> str:
    """Vobiz's document for a machine: wait out the greeting, the message (if any), hang up."""
    root = ElementTree.Element("Response")
    if voicemail is not None:
        ElementTree.SubElement(
            root,
            "Wait",
            {
                "length": str(BEEP_WAIT_SECONDS),
                "silence": "true",
                "minSilence": str(BEEP_SILENCE_MS),
            },
        )
        speak = ElementTree.SubElement(root, "Speak", {"language": voicemail.language})
        speak.text = voicemail.text  # ElementTree escapes &, < and >
    ElementTree.SubElement(root, "Hangup")
    return XML_DECLARATION + ElementTree.tostring(root, encoding="unicode")
