"""Webhooks: forged, replayed or misaddressed callbacks change nothing."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from tests.dialing import Service, wait_for
from tests.support import Tenant
from twilio.request_validator import RequestValidator

from outdial.models import CallEvent


async def ringing_call(service: Service, tenant: Tenant) -> dict[str, Any]:
    """A campaign call that keeps ringing, so forged callbacks meet a live call."""
    await service.scenario(ring_seconds=[30, 30])
    campaign = await tenant.campaign(recipients=[{"phone_number": "+14155550100"}])
    await tenant.ok("POST", f"/campaign/{campaign['id']}/start")

    async def ringing() -> Any:
        calls = await tenant.ok("GET", "/calls", params={"campaign_id": campaign["id"]})
        if not calls or calls[0]["status"] != "ringing":
            return None
        return calls[0] if await events_of(service, calls[0]["id"]) == 2 else None

    return dict(await wait_for(ringing))


async def events_of(service: Service, call_id: str) -> int:
    async with service.app.state.sessionmaker() as session:
        return int(
            await session.scalar(
                select(func.count()).select_from(CallEvent).where(CallEvent.call_id == call_id)
            )
            or 0
        )


async def test_a_wrong_signature_is_403_and_changes_nothing(service: Service) -> None:
    tenant = await service.tenant()
    call = await ringing_call(service, tenant)
    before = await events_of(service, call["id"])
    form = {"CallSid": call["provider_call_sid"], "CallStatus": "completed", "SequenceNumber": "9"}
    # The secret in the path is unknown to an attacker; even a right-looking path is refused
    # without the provider's signature.
    for path in (
        f"/telephony/twilio/{call['id']}/guess/status",
        f"/telephony/twilio/{call['id']}/guess/answer",
        "/telephony/twilio/call_doesnotexist/guess/status",
        f"/telephony/vobiz/{call['id']}/guess/hangup",
    ):
        forged = RequestValidator("tok-secret-1").compute_signature(service.base_url + path, form)
        response = await service.http.post(path, data=form, headers={"X-Twilio-Signature": forged})
        assert response.status_code == 403, path
    current = await tenant.ok("GET", f"/calls/{call['id']}")
    assert current["status"] in ("initiated", "ringing") and current["ended_at"] is None
    assert await events_of(service, call["id"]) == before
