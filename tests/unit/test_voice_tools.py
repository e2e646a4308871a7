"""Which tools a call's LLM is offered, the silence limit, and the fake LLM's tool rules."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("pipecat")

from outdial.voice import actions
from outdial.voice.config import CallContext, resolve
from outdial.voice.fakes import fake_tool_call

BOTH = {"opt_out", "hang_up"}


def config(**call_actions: Any) -> dict[str, Any]:
    return resolve(CallContext(assistant={"call_actions": call_actions}, phone_number="+1415"))


def offered(**call_actions: Any) -> list[str]:
    return [tool.name for tool in actions.tools(config(**call_actions)).standard_tools]


def test_opt_out_is_always_offered_and_hang_up_when_allowed() -> None:
    assert offered() == ["opt_out", "hang_up"]
    assert offered(allow_hangup=False) == ["opt_out"]
    assert offered(enabled=False) == ["opt_out"]


def test_hangup_triggers_reach_the_tool_description() -> None:
    tools = actions.tools(config(hangup_triggers=["that's all", " "])).standard_tools
    assert tools[1].description.endswith("Also call it when the person says: that's all.")


def test_the_silence_limit_needs_call_actions() -> None:
    assert actions.silence_seconds(config()) == 0.0
    assert actions.silence_seconds(config(auto_hangup_silence_seconds=7)) == 7.0
    assert actions.silence_seconds(config(auto_hangup_silence_seconds=7, enabled=False)) == 0.0


@pytest.mark.parametrize(
    ("said", "tool"),
    [
        ("Please stop calling me", "opt_out"),
        ("DO NOT CALL this number", "opt_out"),
        ("Don\u2019t call me again, goodbye", "opt_out"),  # opting out wins over a goodbye
        ("remove me from your list", "opt_out"),
        ("Goodbye", "hang_up"),
        ("OK, bye!", "hang_up"),
        ("I would like the gold plan", None),
        ("Maybe, byebye", None),
    ],
)
def test_the_fake_llm_calls_a_tool_by_rule(said: str, tool: str | None) -> None:
    assert fake_tool_call(said, BOTH) == tool


def test_the_fake_llm_only_calls_tools_it_was_offered() -> None:
    assert fake_tool_call("Goodbye", {"opt_out"}) is None
    assert fake_tool_call("Stop calling me", set()) is None


def test_transfer_is_offered_with_a_valid_number_only() -> None:
    from outdial.voice import transfer

    assert transfer.transfer_number(config()) is None
    assert transfer.transfer_number(config(transfer_number="+1 415-555-0999")) == "+14155550999"
    assert transfer.transfer_number(config(transfer_number="0800 FLOWERS")) is None
    off = config(transfer_number="+14155550999", allow_transfer=False)
    assert transfer.transfer_number(off) is None
    tools = actions.tools(config(transfer_triggers=["manager"]), transfer=True).standard_tools
    assert [tool.name for tool in tools] == ["opt_out", "hang_up", "transfer"]
    assert tools[2].description.endswith("Also call it when the person says: manager.")


def test_the_transfer_documents_dial_the_number_from_the_calls_number() -> None:
    from outdial.voice import transfer

    assert transfer.twilio_twiml("+14155550999", "+14155550123") == (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<Response><Dial callerId="+14155550123">+14155550999</Dial></Response>'
    )
    assert transfer.vobiz_xml("+14155550999", None) == (
        '<?xml version="1.0" encoding="UTF-8"?>'
        "<Response><Dial><Number>+14155550999</Number></Dial></Response>"
    )
    assert "<Hangup/>" in transfer.vobiz_xml(None, "+14155550123")


@pytest.mark.parametrize(
    ("said", "tool"),
    [("Can you transfer me?", "transfer"), ("I want a real person", "transfer")],
)
def test_the_fake_llm_asks_for_a_transfer(said: str, tool: str) -> None:
    assert fake_tool_call(said, BOTH | {"transfer"}) == tool
    assert fake_tool_call(said, BOTH) is None


@pytest.mark.parametrize(
    ("said", "yes", "no", "answer"),
    [
        ("Yes please", [], [], True),
        ("YEAH, sure.", [], [], True),
        ("No, please don't", [], [], False),  # a no wins
        ("I'm not sure", [], [], False),
        ("What is the price?", [], [], None),
        ("yesterday was fine", [], [], None),  # whole words only
        ("Absolutely!", ["absolutely"], ["never"], True),
        ("Yes", ["absolutely"], ["never"], None),  # the account's words replace the defaults
        ("Go ahead then", [], [], True),  # phrases match as whole words
    ],
)
def test_confirmation_answers(
    said: str, yes: list[str], no: list[str], answer: bool | None
) -> None:
    assert actions.confirmation(said, yes, no) is answer


def test_a_warm_transfer_dials_with_a_briefing_for_the_colleague() -> None:
    from outdial.voice import transfer

    url = "https://x.test/telephony/transfer/call_1/tok/whisper"
    assert transfer.twilio_twiml("+14155550999", "+14155550123", url) == (
        '<?xml version="1.0" encoding="UTF-8"?><Response><Dial callerId="+14155550123">'
        f'<Number url="{url}" method="POST">+14155550999</Number></Dial></Response>'
    )
    assert transfer.vobiz_xml("+14155550999", None, url) == (
        '<?xml version="1.0" encoding="UTF-8"?><Response>'
        f'<Dial confirmSound="{url}" confirmKey="1"><Number>+14155550999</Number></Dial>'
        "</Response>"
    )
    turns = [
        {"role": "assistant", "text": "Hi Ann!"},
        {"role": "user", "text": "Tell me about <gold> & more?"},
    ]
    said = transfer.briefing("+14155550177", "Ann", turns)
    assert said == (
        "Transferred call from Ann at +14155550177. The assistant said: Hi Ann. "
        "They said: Tell me about <gold> & more."
    )
    assert "&lt;gold&gt; &amp; more" in transfer.whisper_document("twilio", said)
    assert transfer.whisper_document("vobiz", said).endswith(
        "Press 1 to take the call.</Speak></Response>"
    )
    assert transfer.briefing("+14155550177", None, []) == (
        "Transferred call from +14155550177. Nothing was said yet."
    )
