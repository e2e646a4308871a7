"""Call action notices: `call_actions.webhook_url` is told, over real HTTP (tests/receiver.py),
when the assistant hangs up, transfers or records an opt-out, and when the API acts; a URL
that never answers delays the action by at most `webhook_timeout_ms` and stops nothing.

End to end: the dialer, the simulator's scripted caller and the real pipeline with the fake
services, as tests/integration/test_voice_actions.py. SQLite and PostgreSQL.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import pytest
from tests.dialing import HUMANS_ONLY, Service, wait_for
from tests.receiver import Answer, Received, receiving
from tests.voice import started_campaign, talk_campaign, the_call

from outdial.models import Call
from outdial.voice import actions

TRANSFER_TO = "+14155550999"


def notice_settings(url: str, timeout_ms: int = 3500, **more: Any) -> dict[str, Any]:
    return {"call_actions": {"webhook_url": url, "webhook_timeout_ms": timeout_ms, **more}}


def checked(received: Received, call: dict[str, Any], action: str) -> dict[str, Any]:
    """The notice's body, after what every notice has."""
    assert received.method == "POST" and received.path == "/hooks/outdial"
    assert received.headers["content-type"] == "application/json"
    assert received.headers["x-outdial-event-type"] == "call.action"
    assert "x-outdial-signature" not in received.headers  # unsigned: docs/decisions.md
    notice = received.json()
    assert notice["event"] == "call.action"
    assert notice["call_id"] == call["id"]
    assert notice["action"] == action
    assert notice["at"].endswith("Z") and datetime.fromisoformat(notice["at"])
    return dict(notice)


def wall(received: Received) -> float:
    """When the notice arrived, as Unix time (the receiver records monotonic time)."""
    return received.at + time.time() - time.monotonic()


def ended_at(call: dict[str, Any]) -> float:
    return datetime.fromisoformat(call["ended_at"]).timestamp()


async def hung_up_through_provider(service: Service, call_id: str) -> bool:
    async with service.app.state.sessionmaker() as session:
        call = await session.get(Call, call_id)
    assert call is not None
    return bool(call.hangup_requested)


@pytest.mark.parametrize("provider", ["twilio", "vobiz"])
async def test_a_hang_up_is_announced(service: Service, provider: str) -> None:
    await service.scenario(**HUMANS_ONLY, caller_script=["Goodbye", "Hello?"])
    tenant = await service.tenant()
    async with receiving() as receiver:
        campaign = await talk_campaign(tenant, provider, assistant=notice_settings(receiver.url))
        call = await the_call(tenant, campaign["id"], "assistant_hung_up")
        (received,) = await receiver.wait_for(1)
    notice = checked(received, call, "hang_up")
    assert notice["source"] == "assistant"
    assert "to" not in notice and "mode" not in notice
    assert call["transcript"][-1]["text"] == actions.HANG_UP_GOODBYE
    assert await hung_up_through_provider(service, call["id"])


async def test_a_transfer_is_announced_with_its_number_and_mode(service: Service) -> None:
    await service.scenario(**HUMANS_ONLY, caller_script=["Can you transfer me to someone?"])
    tenant = await service.tenant()
    async with receiving() as receiver:
        assistant = notice_settings(receiver.url, transfer_number=TRANSFER_TO)
        campaign = await talk_campaign(tenant, "vobiz", assistant=assistant)
        call = await the_call(tenant, campaign["id"], "transferred")
        (received,) = await receiver.wait_for(1)
    notice = checked(received, call, "transfer")
    assert notice["to"] == TRANSFER_TO and notice["mode"] == "cold"
    assert notice["source"] == "assistant"
    seen = (await service.http.get(f"/_simulator/_sim/calls/{call['provider_call_sid']}")).json()
    assert seen["transferred_to"] == TRANSFER_TO


async def test_an_opt_out_is_announced(service: Service) -> None:
    await service.scenario(**HUMANS_ONLY, caller_script=["Please stop calling me"])
    tenant = await service.tenant()
    async with receiving() as receiver:
        campaign = await talk_campaign(tenant, "twilio", assistant=notice_settings(receiver.url))
        call = await the_call(tenant, campaign["id"], "assistant_hung_up")
        (received,) = await receiver.wait_for(1)
    assert "to" not in checked(received, call, "opt_out")
    (entry,) = await tenant.ok("GET", "/do-not-call")
    assert entry["call_id"] == call["id"]


@pytest.mark.parametrize("provider", ["twilio", "vobiz"])
async def test_a_url_that_never_answers_does_not_stop_the_hang_up(
    service: Service, provider: str
) -> None:
    await service.scenario(**HUMANS_ONLY, caller_script=["Goodbye", "Hello?"])
    tenant = await service.tenant()
    async with receiving(then=Answer(hang=True)) as receiver:
        assistant = notice_settings(receiver.url, timeout_ms=1000)
        campaign = await talk_campaign(tenant, provider, assistant=assistant)
        call = await the_call(tenant, campaign["id"], "assistant_hung_up")
        (received,) = receiver.received
    checked(received, call, "hang_up")
    assert call["status"] == "completed"
    assert await hung_up_through_provider(service, call["id"])
    # The goodbye (~0.3 s) plays beside the notice; the call ends within about the timeout
    # (with room for a busy machine, well short of the reaper's 10 s for a silent call).
    assert ended_at(call) - wall(received) < 1.0 + 5.0


async def test_a_url_that_never_answers_delays_a_transfer_by_its_timeout_only(
    service: Service,
) -> None:
    # A person on hold stays quiet (and on the line) while the transfer waits.
    script = ["Can you transfer me to someone?", "(silence 5)"]
    await service.scenario(**HUMANS_ONLY, caller_script=script)
    tenant = await service.tenant()
    async with receiving(then=Answer(hang=True)) as receiver:
        assistant = notice_settings(receiver.url, timeout_ms=1500, transfer_number=TRANSFER_TO)
        campaign = await talk_campaign(tenant, "twilio", assistant=assistant)
        call = await the_call(tenant, campaign["id"], "transferred")
        (received,) = receiver.received
    checked(received, call, "transfer")
    seen = (await service.http.get(f"/_simulator/_sim/calls/{call['provider_call_sid']}")).json()
    assert seen["transferred_to"] == TRANSFER_TO
    # The transfer waited for the notice's timeout (not for an answer), then went ahead.
    assert 1.5 - 0.2 < ended_at(call) - wall(received) < 1.5 + 5.0


async def test_no_notice_without_a_webhook_url(service: Service) -> None:
    await service.scenario(**HUMANS_ONLY, caller_script=["Goodbye"])
    tenant = await service.tenant()
    async with receiving() as receiver:
        campaign = await talk_campaign(tenant, "twilio")
        call = await the_call(tenant, campaign["id"], "assistant_hung_up")
        assert call["assistant_config"]["call_actions"]["webhook_url"] is None
        assert receiver.received == []


@pytest.mark.parametrize(
    ("request_body", "action"),
    [
        ({"action": "hangup"}, "hang_up"),
        ({"action": "transfer", "to": TRANSFER_TO, "mode": "warm"}, "transfer"),
    ],
)
async def test_an_api_action_is_announced(
    service: Service, request_body: dict[str, Any], action: str
) -> None:
    script = ["I would like the gold plan", "(silence 20)"]
    await service.scenario(**HUMANS_ONLY, caller_script=script)
    tenant = await service.tenant()
    async with receiving() as receiver:
        campaign = await started_campaign(tenant, "twilio", assistant=notice_settings(receiver.url))

        async def live() -> Any:
            calls = await tenant.ok("GET", "/calls", params={"campaign_id": campaign["id"]})
            return calls[0] if calls and calls[0]["status"] == "in_progress" else None

        call = await wait_for(live, timeout=30)
        await tenant.ok("PATCH", f"/calls/{call['id']}", json=request_body)
        (received,) = await receiver.wait_for(1)
    notice = checked(received, call, action)
    assert notice["source"] == "api"
    if action == "transfer":
        assert notice["to"] == TRANSFER_TO and notice["mode"] == "warm"
    else:
        assert "to" not in notice and "mode" not in notice
