"""Shared steps of the end-to-end voice tests: run a one-person campaign whose call talks
through the real pipeline, then read the stored call and what the simulated caller heard."""

from __future__ import annotations

from typing import Any

from tests.dialing import Service, campaign_when, wait_for
from tests.support import Tenant

PERSON = "+14155550177"
OPENING = "Hi Ann, this is Ava about your renewal."


def acting(assistant: dict[str, Any] | None) -> dict[str, Any]:
    """Assistant fields whose hang-up and transfer act at once (`confirm_required` off)
    unless they say otherwise."""
    fields = dict(assistant or {})
    fields["call_actions"] = {"confirm_required": False, **(fields.get("call_actions") or {})}
    return fields


async def started_campaign(
    tenant: Tenant,
    provider: str,
    number_id: str | None = None,
    assistant: dict[str, Any] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """A started campaign calling PERSON (metadata name Ann). Its assistant acts without
    asking first unless `assistant` sets `confirm_required`."""
    if number_id is None:
        number_id = (await tenant.phone_number(provider=provider, calls_per_second=100))["id"]
    made = await tenant.assistant(system_instruction="You sell renewals.", **acting(assistant))
    campaign = await tenant.campaign(
        assistant_id=made["id"],
        phone_number_id=number_id,
        channel=provider,
        opening_message_template="Hi {{ name }}, this is Ava about your renewal.",
        recipients=[{"phone_number": PERSON, "metadata": {"name": "Ann"}}],
        **fields,
    )
    await tenant.ok("POST", f"/campaign/{campaign['id']}/start")
    return dict(campaign)


async def talk_campaign(
    tenant: Tenant,
    provider: str,
    number_id: str | None = None,
    assistant: dict[str, Any] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """`started_campaign`, run until it completes."""
    campaign = await started_campaign(tenant, provider, number_id, assistant, **fields)
    await campaign_when(tenant, campaign["id"], lambda c: c["status"] == "completed", 60)
    return campaign


async def the_call(
    tenant: Tenant, campaign_id: str, ended: str = "customer_hung_up"
) -> dict[str, Any]:
    """The campaign's one call, once its conversation is stored and its end named `ended`."""

    async def stored() -> Any:
        calls = await tenant.ok("GET", "/calls", params={"campaign_id": campaign_id})
        call = await tenant.ok("GET", f"/calls/{calls[0]['id']}")
        return call if call["summary"] and call["ended_reason"] == ended else None

    return dict(await wait_for(stored, timeout=30))


async def heard_by_caller(service: Service, sid: str) -> dict[str, Any]:
    response = await service.http.get(f"/_simulator/_sim/calls/{sid}")
    return dict(response.json()["conversation"])
