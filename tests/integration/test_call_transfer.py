"""Transfers through `PATCH /calls/{id}` and warm transfers: the person on a live call is
connected to a colleague by the provider, and a warm transfer's colleague hears a briefing
first (fetched by the simulated carrier over HTTP from the transfer's whisper document).

End to end with the dialer, the simulator's scripted caller and the real pipeline with the
fake services; SQLite and PostgreSQL.
"""

from __future__ import annotations

from typing import Any

import pytest
from tests.dialing import HUMANS_ONLY, Service, campaign_when, wait_for
from tests.support import Tenant
from tests.voice import OPENING, PERSON, started_campaign, talk_campaign, the_call

from outdial.voice import actions, transfer

COLLEAGUE = "+14155550999"
REPLY = "Thanks, I heard: I would like the gold plan."


async def talking_call(service: Service, tenant: Tenant, campaign_id: str) -> dict[str, Any]:
    """The campaign's call once the caller has heard the answer to its first line."""

    async def answered() -> Any:
        calls = await tenant.ok("GET", "/calls", params={"campaign_id": campaign_id})
        if not calls or calls[0]["status"] != "in_progress":
            return None
        seen = await service.http.get(f"/_simulator/_sim/calls/{calls[0]['provider_call_sid']}")
        conversation = seen.json()["conversation"] or {}
        if REPLY not in conversation.get("heard", []):
            return None
        # The assistant's turn is in the live transcript (a warm transfer's briefing reads it).
        return calls[0] if len(transfer.turns_so_far(calls[0]["id"])) == 3 else None

    return dict(await wait_for(answered, timeout=30))


async def seen_by_carrier(service: Service, sid: str, key: str) -> dict[str, Any]:
    async def recorded() -> Any:
        seen = (await service.http.get(f"/_simulator/_sim/calls/{sid}")).json()
        return seen if seen[key] else None

    return dict(await wait_for(recorded, timeout=15))


@pytest.mark.parametrize(("provider", "mode"), [("twilio", "cold"), ("vobiz", "warm")])
async def test_patch_transfers_a_live_call_through_the_provider(
    service: Service, provider: str, mode: str
) -> None:
    await service.scenario(
        **HUMANS_ONLY, caller_script=["I would like the gold plan", "(silence 20)"]
    )
    tenant = await service.tenant()
    campaign = await started_campaign(tenant, provider)
    call = await talking_call(service, tenant, campaign["id"])

    body = {"action": "transfer", "to": "(415) 555-0999", "mode": mode}
    changed = await tenant.ok("PATCH", f"/calls/{call['id']}", json=body)
    assert changed["id"] == call["id"]
    seen = await seen_by_carrier(service, call["provider_call_sid"], "transferred_to")
    assert seen["transferred_to"] == COLLEAGUE
    if mode == "warm":
        seen = await seen_by_carrier(service, call["provider_call_sid"], "briefing")
        assert seen["briefing"].startswith(f"Transferred call from Ann at {PERSON}.")
        assert f"The assistant said: {REPLY}" in seen["briefing"]
        assert seen["briefing"].endswith("Press 1 to take the call.")  # Vobiz's confirmKey
    else:
        assert seen["briefing"] is None

    await campaign_when(tenant, campaign["id"], lambda c: c["status"] == "completed", 60)
    ended = await the_call(tenant, campaign["id"], "transferred")
    assert ended["transcript"][0]["text"] == OPENING
    again = await tenant.request("PATCH", f"/calls/{call['id']}", json=body)
    assert again.status_code == 409


@pytest.mark.parametrize("provider", ["twilio", "vobiz"])
async def test_a_warm_transfer_by_the_assistant_briefs_the_colleague(
    service: Service, provider: str
) -> None:
    script = ["I would like the gold plan", "Can you transfer me to someone?"]
    await service.scenario(**HUMANS_ONLY, caller_script=script)
    tenant = await service.tenant()
    campaign = await talk_campaign(
        tenant,
        provider,
        assistant={
            "call_actions": {
                "transfer_number": COLLEAGUE,
                "transfer_mode": "warm",
                "confirm_required": False,
            }
        },
    )
    call = await the_call(tenant, campaign["id"], "transferred")
    assert call["transcript"][-1]["text"] == actions.TRANSFER_HOLD
    seen = await seen_by_carrier(service, call["provider_call_sid"], "briefing")
    assert seen["transferred_to"] == COLLEAGUE
    briefing = seen["briefing"]
    assert briefing.startswith(f"Transferred call from Ann at {PERSON}. They said: ")
    assert f"The assistant said: {REPLY} They said: Can you transfer me to someone." in briefing
    assert briefing.endswith("Press 1 to take the call.") == (provider == "vobiz")


async def test_patch_transfer_refusals(service: Service) -> None:
    await service.scenario(
        **HUMANS_ONLY, caller_script=["I would like the gold plan", "(silence 20)"]
    )
    tenant = await service.tenant()
    campaign = await started_campaign(tenant, "twilio")  # the assistant has no transfer number
    call = await talking_call(service, tenant, campaign["id"])
    path = f"/calls/{call['id']}"

    missing = await tenant.request("PATCH", path, json={"action": "transfer"})
    assert missing.status_code == 422 and missing.json()["detail"][0]["loc"] == ["body", "to"]
    invalid = await tenant.request("PATCH", path, json={"action": "transfer", "to": "12"})
    assert invalid.status_code == 422 and invalid.json()["detail"][0]["loc"] == ["body", "to"]
    mode = await tenant.request("PATCH", path, json={"action": "transfer", "mode": "hot"})
    assert mode.status_code == 422
    other = await service.tenant("someone-else")
    foreign = await other.request("PATCH", path, json={"action": "transfer", "to": COLLEAGUE})
    assert foreign.status_code == 404

    await tenant.ok("PATCH", path, json={"action": "hangup"})
    await campaign_when(tenant, campaign["id"], lambda c: c["status"] == "completed", 60)
    ended = await tenant.request("PATCH", path, json={"action": "transfer", "to": COLLEAGUE})
    assert ended.status_code == 409
    seen = (await service.http.get(f"/_simulator/_sim/calls/{call['provider_call_sid']}")).json()
    assert seen["transferred_to"] is None


async def test_the_transfer_documents_need_the_transfers_token(service: Service) -> None:
    for path in ("/telephony/transfer/call_doesnotexist/nope", "/telephony/transfer/x/y/whisper"):
        assert (await service.http.post(path)).status_code == 403
