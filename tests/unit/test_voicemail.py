"""The voicemail drop's message and documents: rendered, made speakable, escaped."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree

import pytest
from hypothesis import given
from hypothesis import strategies as st

from outdial.telephony import twilio, voicemail
from outdial.telephony.simulator import caller
from outdial.telephony.voicemail import Source, Voicemail

NASTY = "Hi <Ann> & \"Bob\" 'x' ]]> </Speak><Hangup/> &amp;"


def source(template: str | None, **fields: object) -> Source:
    values: dict[str, object] = {
        "phone_number_id": "num_1",
        "to_number": "+14155550100",
        "template": template,
        "metadata": {"name": "Ann"},
    }
    values.update(fields)
    return Source(**values)  # type: ignore[arg-type]


def tags(document: str) -> list[str]:
    return [element.tag for element in ElementTree.fromstring(document)]


def test_the_template_is_rendered_with_the_recipients_metadata() -> None:
    message = voicemail.message(source("Hi {{ name }}, call us back at {{ phone_number }}"))
    assert message == Voicemail("Hi Ann, call us back at +14155550100", "en-US")


@pytest.mark.parametrize("template", [None, "", "{{ '' }}", "  {{ missing | default('') }} \n "])
def test_no_template_or_nothing_to_say_is_no_message(template: str | None) -> None:
    assert voicemail.message(source(template)) is None


def test_a_template_that_fails_to_render_leaves_no_message() -> None:
    assert voicemail.message(source("Hi {{ surname }}")) is None


def test_a_long_message_is_cut_at_a_word() -> None:
    message = voicemail.message(source("{{ 'call us back ' * 200 }}"))
    assert message is not None
    assert len(message.text) <= voicemail.MAX_MESSAGE_CHARS
    assert message.text.endswith("back") or message.text.endswith("us")
    assert voicemail.cut("x" * 1500, 1000) == "x" * 1000  # no space: a hard cut


@pytest.mark.parametrize(
    ("assistant", "overrides", "expected"),
    [
        ({}, {}, "en-US"),
        ({"voice": {"language": "en"}}, {}, "en-US"),
        ({"voice": {"language": "hi"}}, {}, "hi-IN"),
        ({"voice": {"language": "en_gb"}}, {}, "en-GB"),
        ({"voice": {"language": "en"}}, {"voice": {"language": "es-MX"}}, "es-MX"),
        ({"voice": {"language": "multi"}}, {}, "en-US"),
        ({"voice": {"language": 'en-US"><x'}}, {}, "en-US"),
    ],
)
def test_the_language_is_the_assistants_as_a_locale(
    assistant: dict[str, object], overrides: dict[str, object], expected: str
) -> None:
    message = voicemail.message(source("Hello", assistant=assistant, overrides=overrides))
    assert message is not None and message.language == expected


def test_twilio_says_the_message_then_hangs_up_and_escapes_it() -> None:
    document = voicemail.twiml(Voicemail(NASTY))
    root = ElementTree.fromstring(document)
    assert tags(document) == ["Say", "Hangup"]
    assert root[0].text == NASTY and root[0].get("language") == "en-US"
    assert "<Ann>" not in document and "</Speak><Hangup/>" not in document


def test_vobiz_waits_for_quiet_then_speaks_and_hangs_up_escaped() -> None:
    document = voicemail.vobiz_xml(Voicemail(NASTY, "en-GB"))
    root = ElementTree.fromstring(document)
    assert document.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    assert tags(document) == ["Wait", "Speak", "Hangup"]
    wait, speak = root[0], root[1]
    assert wait.get("silence") == "true" and wait.get("minSilence") == "2000"
    assert int(wait.get("length") or 0) * 1000 > 2000  # Vobiz: length must exceed minSilence
    assert speak.text == NASTY and speak.get("language") == "en-GB"
    assert "<Ann>" not in document and "</Speak><Hangup/>" not in document


def test_without_a_message_both_providers_just_hang_up() -> None:
    assert tags(voicemail.twiml(None)) == ["Hangup"]
    assert tags(voicemail.vobiz_xml(None)) == ["Hangup"]


def test_characters_xml_cannot_carry_are_dropped() -> None:
    message = voicemail.message(source("Hi {{ name }}", metadata={"name": "A\x01n\x0bn\ufffe"}))
    assert message is not None and message.text == "Hi A n n"
    ElementTree.fromstring(voicemail.vobiz_xml(message))


@given(st.text(max_size=300))
def test_any_message_survives_both_documents(text: str) -> None:
    spoken = voicemail.speakable(text)
    if not spoken:
        return
    message = Voicemail(spoken)
    for document in (voicemail.twiml(message), voicemail.vobiz_xml(message)):
        assert caller.spoken_of(document) == spoken.strip()


@pytest.mark.parametrize(
    ("answered_by", "after"),
    [
        ("machine_end_beep", True),
        ("machine_end_silence", True),
        ("machine_end_other", True),
        ("machine_start", False),
        ("fax", False),
        ("human", False),
        ("unknown", False),
        (None, False),
    ],
)
def test_twilio_leaves_a_message_only_once_the_greeting_is_over(
    answered_by: str | None, after: bool
) -> None:
    assert twilio.after_the_beep(answered_by) is after
