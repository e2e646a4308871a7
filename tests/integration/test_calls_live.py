"""POST /calls places a call through the same engine; PATCH hangs it up; stop can end calls."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.fernet import Fernet
from sqlalchemy import update
from tests.dialing import HUMANS_ONLY, Service, campaign_when, wait_for
from tests.support import Tenant, numbers

from outdial.database import write_transaction
from outdial.models import PhoneNumber


async def call_status(tenant: Tenant, call_id: str, *statuses: str) -> Any:
    async def check() -> Any:
        call = await tenant.ok("GET", f"/calls/{call_id}")
        return call if call["status"] in statuses else None

    return await wait_for(check)


async def test_a_single_call_is_placed_answered_and_hung_up(service: Service) -> None:
    await service.scenario(
        **HUMANS_ONLY,
        ring_seconds=[0.05, 0.1],
        talk_seconds=[60, 60],
    )
    tenant = await service.tenant()
    assistant = await tenant.assistant()
    number = await tenant.phone_number(assistant_id=assistant["id"])
    call = await tenant.ok(
        "POST",
        "/calls",
        json={"phone_number_id": number["id"], "to_number": "(415) 555-0100", "label": "vip"},
    )
    assert call["to_number"] == "+14155550100" and call["label"] == "vip"
    assert call["assistant_id"] == assistant["id"] and call["campaign_id"] is None
    assert call["provider_call_sid"].startswith("CA")
    live = await call_status(tenant, call["id"], "in_progress")
    assert live["answered_by"] == "human" and live["answered_at"]
    again = await tenant.post(
        "/calls", json={"phone_number_id": number["id"], "to_number": "+14155550100"}
    )
    assert again.status_code == 409  # one live call per person
    await tenant.ok("PATCH", f"/calls/{call['id']}", json={"action": "hangup"})
    ended = await call_status(tenant, call["id"], "completed")
    assert ended["ended_at"] and ended["duration_seconds"] is not None
    refused = await tenant.request("PATCH", f"/calls/{call['id']}", json={"action": "hangup"})
    assert refused.status_code == 409


async def test_a_number_whose_credentials_cannot_be_read_gets_no_server_error(
    service: Service,
) -> None:
    """The caller number's credentials were sealed with another secret key (the key changed
    without re-entering them) while a call was live: `PATCH /calls/{id}` hangup cannot ask
    the provider, which it logs as for a refused hang-up, and answers as then (the campaign
    stop with `hangup_active` and the assistant's own hang-up go through the same step); a
    transfer answers 502 as when the provider does not take it; a callback, which cannot be
    checked, is refused (403) and changes nothing. (Before, each was a 500.)"""
    await service.scenario(**HUMANS_ONLY, ring_seconds=[0.05, 0.1], talk_seconds=[60, 60])
    tenant = await service.tenant()
    assistant = await tenant.assistant()
    number = await tenant.phone_number(assistant_id=assistant["id"])
    call = await tenant.ok(
        "POST", "/calls", json={"phone_number_id": number["id"], "to_number": "+14155550100"}
    )
    await call_status(tenant, call["id"], "in_progress")
    async with write_transaction(service.app.state.sessionmaker) as session:
        await session.execute(
            update(PhoneNumber)
            .where(PhoneNumber.id == number["id"])
            .values(credentials=Fernet(Fernet.generate_key()).encrypt(b"{}"))
        )
    answered = await tenant.request("PATCH", f"/calls/{call['id']}", json={"action": "hangup"})
    assert answered.status_code == 200
    transfer = {"action": "transfer", "to": "+14155550177", "mode": "cold"}
    refused = await tenant.request("PATCH", f"/calls/{call['id']}", json=transfer)
    assert refused.status_code == 502  # as when the provider does not take the transfer
    assert (await service.observed())["live"] == 1  # the provider was never asked
    # A callback for the call cannot be checked without the token: refused like a forged one.
    secret, _ = service.app.state.carriers.call_secrets.new(call["id"], "twilio", number["id"])
    callback = await service.http.post(
        f"/telephony/twilio/{call['id']}/{secret}/status",
        data={"CallSid": call["provider_call_sid"], "CallStatus": "completed"},
        headers={"X-Twilio-Signature": "c2lnbmVk"},
    )
    assert callback.status_code == 403
    assert (await tenant.ok("GET", f"/calls/{call['id']}"))["status"] == "in_progress"


async def test_a_call_needs_an_assistant_and_a_valid_number(service: Service) -> None:
    tenant = await service.tenant()
    number = await tenant.phone_number()
    missing = await tenant.post(
        "/calls", json={"phone_number_id": number["id"], "to_number": "+14155550100"}
    )
    assert missing.status_code == 422 and missing.json()["detail"][0]["loc"] == [
        "body",
        "assistant_id",
    ]
    assistant = await tenant.assistant()
    linked = await tenant.phone_number("+14155550199", assistant_id=assistant["id"])
    empty = await tenant.post(
        "/calls",
        json={"phone_number_id": linked["id"], "to_number": "+14155550100", "assistant_id": ""},
    )
    assert empty.status_code == 404  # an empty id is an unknown id, not "use the default"
    invalid = await tenant.post(
        "/calls",
        json={"phone_number_id": number["id"], "to_number": "12", "assistant_id": assistant["id"]},
    )
    assert invalid.status_code == 422 and invalid.json()["detail"][0]["loc"] == [
        "body",
        "to_number",
    ]
    assert (await service.observed())["created"] == 0


async def test_stop_with_hangup_active_ends_live_calls(service: Service) -> None:
    await service.scenario(
        **HUMANS_ONLY,
        ring_seconds=[0.05, 0.1],
        talk_seconds=[60, 60],
    )
    tenant = await service.tenant()
    number = await tenant.phone_number(calls_per_second=100)
    campaign = await tenant.campaign(
        phone_number_id=number["id"],
        max_concurrency=3,
        recipients=[{"phone_number": n} for n in numbers(6)],
    )
    await tenant.ok("POST", f"/campaign/{campaign['id']}/start")

    await campaign_when(tenant, campaign["id"], lambda c: c["counts"]["in_progress"] == 3)
    stopped = await tenant.ok(
        "POST", f"/campaign/{campaign['id']}/stop", json={"hangup_active": True}
    )
    assert stopped["status"] == "completed" and stopped["ended_reason"] == "stopped"
    assert stopped["counts"]["cancelled"] == 3

    final = await campaign_when(tenant, campaign["id"], lambda c: c["counts"]["calls_active"] == 0)
    assert final["counts"]["completed"] == 3 and final["counts"]["cancelled"] == 3
    assert (await service.observed())["created"] == 3


async def test_schedule_end_expires_the_rest(service: Service) -> None:
    await service.scenario(
        **HUMANS_ONLY,
        ring_seconds=[0.05, 0.1],
        talk_seconds=[1.5, 1.5],
    )
    tenant = await service.tenant()
    end = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    campaign = await tenant.campaign(
        max_concurrency=1,
        scheduleEndTime=end,
        recipients=[{"phone_number": n} for n in numbers(10)],
    )
    await tenant.ok("POST", f"/campaign/{campaign['id']}/start")

    done = await campaign_when(tenant, campaign["id"], lambda c: c["status"] == "completed")
    assert done["ended_reason"] == "schedule_ended"
    # A dial claimed just before the end may still be on its way to the carrier: count the
    # carrier's calls once every call the campaign claimed has finished.
    done = await campaign_when(tenant, campaign["id"], lambda c: c["counts"]["calls_active"] == 0)
    placed = (await service.observed())["created"]
    assert placed <= 2  # one call at a time, 1.5 s each, in a 2 s window
    assert done["counts"]["expired"] == 10 - placed
    calls = await tenant.ok("GET", "/calls", params={"campaign_id": campaign["id"]})
    assert all(c["created_at"] < done["schedule_end_time"] for c in calls)
