"""The assistant acts on the call: the person opts out, the assistant hangs up, silence.

End to end: the dialer, the simulator's scripted caller, the real pipeline with the fake
services (the fake LLM calls a tool when the person asks to stop being called or says
goodbye), and the provider's hang-up through the simulated carrier. SQLite and PostgreSQL.
"""

from __future__ import annotations

from typing import Any

import pytest
from tests.dialing import HUMANS_ONLY, Service
from tests.voice import OPENING, PERSON, heard_by_caller, talk_campaign, the_call

from outdial.models import Call
from outdial.voice import actions


async def hung_up_through_provider(service: Service, call_id: str) -> bool:
    async with service.app.state.sessionmaker() as session:
        call = await session.get(Call, call_id)
    assert call is not None
    return bool(call.hangup_requested)


def spoken(call: dict[str, Any]) -> list[tuple[str, str]]:
    return [(turn["role"], turn["text"]) for turn in call["transcript"]]


@pytest.mark.parametrize("provider", ["twilio", "vobiz"])
async def test_an_opt_out_lists_the_number_and_no_campaign_dials_it_again(
    service: Service, provider: str
) -> None:
    script = ["Please stop calling me", "Are you still there?"]
    await service.scenario(**HUMANS_ONLY, caller_script=script)
    tenant = await service.tenant()
    campaign = await talk_campaign(tenant, provider)
    call = await the_call(tenant, campaign["id"], "assistant_hung_up")

    assert spoken(call) == [
        ("assistant", OPENING),
        ("user", "Please stop calling me"),
        ("assistant", actions.OPT_OUT_GOODBYE),
    ]
    heard = await heard_by_caller(service, call["provider_call_sid"])
    assert heard["said"] == script[:1]  # the call ended before the caller's next line
    assert heard["heard"] == [OPENING, actions.OPT_OUT_GOODBYE]
    # The person's outcome is the call's: answered and completed, not "skipped".
    recipients = await tenant.ok("GET", f"/campaign/{campaign['id']}/recipients")
    assert recipients[0]["status"] == "completed"

    (entry,) = await tenant.ok("GET", "/do-not-call")
    assert entry["phone_number"] == PERSON
    assert entry["source"] == "opt_out" and entry["call_id"] == call["id"]

    dialed_before = (await service.observed())["created"]
    later = await talk_campaign(tenant, provider, campaign["phone_number_id"])
    (row,) = await tenant.ok("GET", f"/campaign/{later['id']}/recipients")
    assert row["status"] == "skipped" and row["status_reason"] == "dnc"
    assert row["attempts"] == 0 and row["last_call_id"] is None
    assert (await service.observed())["created"] == dialed_before


async def test_an_opt_out_is_honoured_with_call_actions_off(service: Service) -> None:
    """Opting out is always possible: it is the person's right, not an assistant feature."""
    await service.scenario(**HUMANS_ONLY, caller_script=["Do not call me again"])
    tenant = await service.tenant()
    campaign = await talk_campaign(tenant, "twilio", assistant={"call_actions": {"enabled": False}})
    call = await the_call(tenant, campaign["id"], "assistant_hung_up")
    assert spoken(call)[-1] == ("assistant", actions.OPT_OUT_GOODBYE)
    (entry,) = await tenant.ok("GET", "/do-not-call")
    assert entry["call_id"] == call["id"]


@pytest.mark.parametrize("provider", ["twilio", "vobiz"])
async def test_the_assistant_hangs_up_after_a_goodbye(service: Service, provider: str) -> None:
    script = ["Goodbye", "Hello? Are you there?"]
    await service.scenario(**HUMANS_ONLY, caller_script=script)
    tenant = await service.tenant()
    campaign = await talk_campaign(tenant, provider)
    call = await the_call(tenant, campaign["id"], "assistant_hung_up")
    assert spoken(call) == [
        ("assistant", OPENING),
        ("user", "Goodbye"),
        ("assistant", actions.HANG_UP_GOODBYE),
    ]
    heard = await heard_by_caller(service, call["provider_call_sid"])
    assert heard["said"] == ["Goodbye"] and heard["heard"] == [OPENING, actions.HANG_UP_GOODBYE]
    assert call["status"] == "completed"
    assert await hung_up_through_provider(service, call["id"])
    assert await tenant.ok("GET", "/do-not-call") == []


async def test_without_the_hang_up_tool_the_person_hangs_up(service: Service) -> None:
    await service.scenario(**HUMANS_ONLY, caller_script=["Goodbye"])
    tenant = await service.tenant()
    campaign = await talk_campaign(
        tenant, "twilio", assistant={"call_actions": {"allow_hangup": False}}
    )
    call = await the_call(tenant, campaign["id"], "customer_hung_up")
    assert spoken(call)[-1] == ("assistant", "Thank you for your time. Goodbye!")
    assert not await hung_up_through_provider(service, call["id"])


@pytest.mark.parametrize("provider", ["twilio", "vobiz"])
async def test_the_assistant_hangs_up_on_silence(service: Service, provider: str) -> None:
    await service.scenario(**HUMANS_ONLY, caller_script=["Hello", "(silence 20)"])
    tenant = await service.tenant()
    campaign = await talk_campaign(
        tenant, provider, assistant={"call_actions": {"auto_hangup_silence_seconds": 5}}
    )
    call = await the_call(tenant, campaign["id"], "silence_timeout")

    assert spoken(call) == [
        ("assistant", OPENING),
        ("user", "Hello"),
        ("assistant", "Thanks, I heard: Hello."),
        ("assistant", actions.SILENCE_GOODBYE),
    ]
    goodbye = call["transcript"][-1]
    heard = await heard_by_caller(service, call["provider_call_sid"])
    assert heard["heard"][-1] == actions.SILENCE_GOODBYE
    assert call["duration_seconds"] < 15  # hung up well before the caller's silence ended
    assert goodbye["started_at"] > call["transcript"][-2]["ended_at"]


TRANSFER_TO = "+14155550999"


@pytest.mark.parametrize("provider", ["twilio", "vobiz"])
async def test_the_assistant_transfers_the_person_through_the_provider(
    service: Service, provider: str
) -> None:
    script = ["Can you transfer me to someone?", "Hello?"]
    await service.scenario(**HUMANS_ONLY, caller_script=script)
    tenant = await service.tenant()
    campaign = await talk_campaign(
        tenant, provider, assistant={"call_actions": {"transfer_number": TRANSFER_TO}}
    )
    call = await the_call(tenant, campaign["id"], "transferred")

    assert spoken(call) == [
        ("assistant", OPENING),
        ("user", script[0]),
        ("assistant", actions.TRANSFER_HOLD),
    ]
    response = await service.http.get(f"/_simulator/_sim/calls/{call['provider_call_sid']}")
    seen = response.json()
    assert seen["transferred_to"] == TRANSFER_TO
    assert seen["conversation"]["heard"] == [OPENING, actions.TRANSFER_HOLD]
    # A slow transfer may let the caller say its next line into the closing stream; the
    # transcript above shows the assistant never took it as a turn.
    assert seen["conversation"]["said"][:1] == script[:1]
    assert not await hung_up_through_provider(service, call["id"])


async def test_no_transfer_without_a_transfer_number(service: Service) -> None:
    await service.scenario(**HUMANS_ONLY, caller_script=["Can you transfer me to someone?"])
    tenant = await service.tenant()
    campaign = await talk_campaign(tenant, "twilio")
    call = await the_call(tenant, campaign["id"], "customer_hung_up")
    assert spoken(call)[-1] == ("assistant", "Thanks, I heard: Can you transfer me to someone.")
    response = await service.http.get(f"/_simulator/_sim/calls/{call['provider_call_sid']}")
    assert response.json()["transferred_to"] is None


async def test_the_vobiz_transfer_document_needs_the_calls_secret(service: Service) -> None:
    response = await service.http.post("/telephony/transfer/call_doesnotexist/nope")
    assert response.status_code == 403


ASKING = {"call_actions": {"confirm_required": True}}


@pytest.mark.parametrize("provider", ["twilio", "vobiz"])
async def test_a_confirmed_hang_up_goes_ahead(service: Service, provider: str) -> None:
    await service.scenario(**HUMANS_ONLY, caller_script=["Goodbye", "Yes please", "Hello?"])
    tenant = await service.tenant()
    campaign = await talk_campaign(tenant, provider, assistant=ASKING)
    call = await the_call(tenant, campaign["id"], "assistant_hung_up")
    assert spoken(call) == [
        ("assistant", OPENING),
        ("user", "Goodbye"),
        ("assistant", actions.CONFIRM_HANG_UP),
        ("user", "Yes please"),
        ("assistant", actions.HANG_UP_GOODBYE),
    ]
    assert await hung_up_through_provider(service, call["id"])


async def test_a_declined_hang_up_lets_the_conversation_go_on(service: Service) -> None:
    script = ["Goodbye", "No, not yet", "I would like the gold plan"]
    await service.scenario(**HUMANS_ONLY, caller_script=script)
    tenant = await service.tenant()
    campaign = await talk_campaign(tenant, "twilio", assistant=ASKING)
    call = await the_call(tenant, campaign["id"], "customer_hung_up")
    assert spoken(call) == [
        ("assistant", OPENING),
        ("user", "Goodbye"),
        ("assistant", actions.CONFIRM_HANG_UP),
        ("user", "No, not yet"),
        ("assistant", actions.CONFIRM_DECLINED),
        ("user", "I would like the gold plan"),
        ("assistant", "Thanks, I heard: I would like the gold plan."),
    ]
    assert not await hung_up_through_provider(service, call["id"])


async def test_an_unclear_answer_drops_the_hang_up_and_is_answered(service: Service) -> None:
    await service.scenario(**HUMANS_ONLY, caller_script=["Goodbye", "What is the price?"])
    tenant = await service.tenant()
    campaign = await talk_campaign(tenant, "twilio", assistant=ASKING)
    call = await the_call(tenant, campaign["id"], "customer_hung_up")
    assert spoken(call)[2:] == [
        ("assistant", actions.CONFIRM_HANG_UP),
        ("user", "What is the price?"),
        ("assistant", "Thanks, I heard: What is the price."),
    ]


@pytest.mark.parametrize("provider", ["twilio", "vobiz"])
async def test_a_transfer_waits_for_the_accounts_own_yes(service: Service, provider: str) -> None:
    script = ["Can you transfer me to someone?", "Absolutely", "Hello?"]
    await service.scenario(**HUMANS_ONLY, caller_script=script)
    tenant = await service.tenant()
    asking = {
        "call_actions": {
            "confirm_required": True,
            "confirm_yes": ["absolutely"],
            "confirm_no": ["never"],
            "transfer_number": TRANSFER_TO,
        }
    }
    campaign = await talk_campaign(tenant, provider, assistant=asking)
    call = await the_call(tenant, campaign["id"], "transferred")
    assert spoken(call) == [
        ("assistant", OPENING),
        ("user", script[0]),
        ("assistant", actions.CONFIRM_TRANSFER),
        ("user", "Absolutely"),
        ("assistant", actions.TRANSFER_HOLD),
    ]
    response = await service.http.get(f"/_simulator/_sim/calls/{call['provider_call_sid']}")
    assert response.json()["transferred_to"] == TRANSFER_TO


async def test_an_opt_out_never_waits_for_a_confirmation(service: Service) -> None:
    await service.scenario(**HUMANS_ONLY, caller_script=["Please stop calling me", "Yes"])
    tenant = await service.tenant()
    campaign = await talk_campaign(tenant, "twilio", assistant=ASKING)
    call = await the_call(tenant, campaign["id"], "assistant_hung_up")
    assert spoken(call)[1:] == [
        ("user", "Please stop calling me"),
        ("assistant", actions.OPT_OUT_GOODBYE),
    ]
