"""Voicemail drop: a machine hears the campaign's rendered message, then the call ends.

The simulator's machine acts on the service's documents as the carriers do: Twilio's answer
TwiML (`<Say>`), or the XML a Vobiz call is transferred to (`<Speak>`), fetched with a
signed request. The assistant never talks to a machine. SQLite and PostgreSQL.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from sqlalchemy import select
from tests.dialing import Service, campaign_when, wait_for
from tests.support import Tenant

from outdial.database import write_transaction
from outdial.ids import new_id
from outdial.models import Call, CallEvent
from outdial.models.call_event import MEDIA_CLAIM_KEY
from outdial.telephony import vobiz

MACHINES_ONLY = {"human": 0, "machine": 1, "no_answer": 0, "busy": 0, "failed": 0}
TEMPLATE = "Hi {{ name }}, call us back"
PEOPLE = [
    {"phone_number": "+14155550171", "metadata": {"name": "Ann"}},
    {"phone_number": "+14155550172", "metadata": {"name": "Bob & Co <VIP>"}},
]
SECRET = "voicemail-test-secret"


async def machine_campaign(tenant: Tenant, provider: str, **fields: Any) -> dict[str, Any]:
    number = await tenant.phone_number(provider=provider, calls_per_second=100)
    campaign = await tenant.campaign(
        phone_number_id=number["id"], channel=provider, recipients=PEOPLE, **fields
    )
    await tenant.ok("POST", f"/campaign/{campaign['id']}/start")
    return dict(campaign)


async def settled(tenant: Tenant, campaign_id: str, *statuses: str) -> list[dict[str, Any]]:
    """The recipients, once every one has reached one of `statuses`."""

    async def check() -> Any:
        people = await tenant.ok("GET", f"/campaign/{campaign_id}/recipients")
        return people if all(p["status"] in statuses for p in people) else None

    return list(await wait_for(check, timeout=60))


async def sim_call(service: Service, sid: str) -> dict[str, Any]:
    return dict((await service.http.get(f"/_simulator/_sim/calls/{sid}")).json())


async def media_claims(service: Service, call_id: str) -> list[Any]:
    async with service.app.state.sessionmaker() as session:
        rows = await session.scalars(
            select(CallEvent).where(
                CallEvent.call_id == call_id, CallEvent.dedupe_key == MEDIA_CLAIM_KEY
            )
        )
        return list(rows.all())


@pytest.mark.parametrize("provider", ["twilio", "vobiz"])
async def test_a_machine_hears_the_rendered_message_and_the_retry_follows(
    service: Service, provider: str
) -> None:
    # A caller script: had the documents offered the assistant's stream, it would be joined.
    await service.scenario(**MACHINES_ONLY, caller_script=["Leave a message after the tone"])
    tenant = await service.tenant()
    policy = {"max_attempts": 2, "retry_on": ["voicemail"], "delays_seconds": [60]}
    campaign = await machine_campaign(
        tenant, provider, voicemail_message_template=TEMPLATE, retry_policy=policy
    )
    people = await settled(tenant, campaign["id"], "retry_scheduled")

    for person in people:
        assert person["last_outcome"] == "voicemail" and person["attempts"] == 1
        assert person["next_attempt_at"] and person["status_reason"] == "retry 2 after voicemail"
        call = await tenant.ok("GET", f"/calls/{person['last_call_id']}")
        assert call["status"] == "completed" and call["answered_by"] == "machine"
        assert call["transcript"] is None and call["assistant_config"] is None
        assert await media_claims(service, call["id"]) == []
        seen = await sim_call(service, call["provider_call_sid"])
        name = person["metadata"]["name"]
        assert seen["voicemail"] == f"Hi {name}, call us back"
        assert seen["state"] == "completed" and seen["fate"] == "machine"
        if provider == "twilio":  # the answer TwiML never offered a stream
            assert seen["conversation"] is None
        else:  # Vobiz opens the stream at answer; the verdict kept it from the assistant,
            # and the service left it open for the transfer to end (closing it would end the
            # answer document, and the call, before the message).
            assert seen["conversation"]["heard"] == []
            assert seen["conversation"]["stream"] == "connected"
            assert seen["conversation"]["close_code"] != 1008
    assert (await service.observed())["created"] == 2  # the retries wait their 60 s


@pytest.mark.parametrize("provider", ["twilio", "vobiz"])
async def test_without_a_template_a_machine_is_hung_up_in_silence(
    service: Service, provider: str
) -> None:
    await service.scenario(**MACHINES_ONLY)
    tenant = await service.tenant()
    campaign = await machine_campaign(tenant, provider)
    await campaign_when(tenant, campaign["id"], lambda c: c["status"] == "completed", 60)
    people = await settled(tenant, campaign["id"], "voicemail")
    for person in people:
        call = await tenant.ok("GET", f"/calls/{person['last_call_id']}")
        assert call["status"] == "completed" and call["answered_by"] == "machine"
        seen = await sim_call(service, call["provider_call_sid"])
        assert seen["voicemail"] is None and seen["state"] == "completed"


async def machine_call(service: Service, tenant: Tenant, **fields: Any) -> dict[str, Any]:
    """A live Vobiz call a machine answered, written with a secret the test knows."""
    number = await tenant.phone_number("+919876543210", provider="vobiz")
    campaign = await tenant.campaign(
        phone_number_id=number["id"],
        channel="vobiz",
        recipients=PEOPLE[:1],
        voicemail_message_template=TEMPLATE,
    )
    person = (await tenant.ok("GET", f"/campaign/{campaign['id']}/recipients"))[0]
    values: dict[str, Any] = {
        "id": new_id("call"),
        "user_id": tenant.user_id,
        "campaign_id": campaign["id"],
        "recipient_id": int(person["id"].removeprefix("rcp_")),
        "phone_number_id": number["id"],
        "provider": "vobiz",
        "to_number": person["phone_number"],
        "status": "in_progress",
        "answered_by": "machine",
        "provider_call_sid": "uuid-1",
        "secret_hash": hashlib.sha256(SECRET.encode()).hexdigest(),
    }
    values.update(fields)
    async with write_transaction(service.app.state.sessionmaker) as session:
        session.add(Call(**values))
    return values


async def call_state(service: Service, call_id: str) -> tuple[Any, ...]:
    async with service.app.state.sessionmaker() as session:
        call = await session.get(Call, call_id)
        events = (
            await session.scalars(select(CallEvent.dedupe_key).where(CallEvent.call_id == call_id))
        ).all()
    assert call is not None
    return (call.status, call.answered_by, call.ended_at, sorted(events))


def signed(service: Service, path: str, token: str = "vobiz-secret-1") -> dict[str, str]:
    nonce = "12345678901234567890"
    return {
        "X-Vobiz-Signature-V3": vobiz.sign_v3(service.base_url + path, nonce, token),
        "X-Vobiz-Signature-V3-Nonce": nonce,
    }


async def test_the_voicemail_url_answers_only_signed_requests(service: Service) -> None:
    tenant = await service.tenant()
    call = await machine_call(service, tenant)
    path = f"/telephony/vobiz/{call['id']}/{SECRET}/voicemail"
    form = {"CallUUID": "uuid-1", "Event": "Transfer", "CallStatus": "in-progress"}
    before = await call_state(service, call["id"])
    wrong_secret = f"/telephony/vobiz/{call['id']}/guess/voicemail"
    refused = [
        (path, {}),  # unsigned
        (path, signed(service, path, token="not-the-token")),  # forged
        (path, {**signed(service, path), "X-Vobiz-Signature-V3-Nonce": "1" * 20}),  # replayed
        (wrong_secret, signed(service, wrong_secret)),  # the secret is not the call's
        (
            f"/telephony/twilio/{call['id']}/{SECRET}/voicemail",  # Twilio has no such kind
            signed(service, f"/telephony/twilio/{call['id']}/{SECRET}/voicemail"),
        ),
    ]
    for url, headers in refused:
        response = await service.http.post(url, data=form, headers=headers)
        assert response.status_code == 403, (url, headers)
        assert "Speak" not in response.text
    assert await call_state(service, call["id"]) == before

    answered = await service.http.post(path, data=form, headers=signed(service, path))
    assert answered.status_code == 200
    assert answered.headers["content-type"].startswith("application/xml")
    assert '<Speak language="en-US">Hi Ann, call us back</Speak>' in answered.text
    status, answered_by, ended_at, events = await call_state(service, call["id"])
    assert (status, answered_by, ended_at) == before[:3]  # the call did not move
    assert events == ["voicemail"]


@pytest.mark.parametrize("fields", [{"answered_by": "human"}, {"status": "completed"}])
async def test_the_voicemail_url_speaks_only_to_a_machine_on_a_live_call(
    service: Service, fields: dict[str, Any]
) -> None:
    tenant = await service.tenant()
    call = await machine_call(service, tenant, **fields)
    path = f"/telephony/vobiz/{call['id']}/{SECRET}/voicemail"
    before = await call_state(service, call["id"])
    response = await service.http.post(
        path, data={"CallUUID": "uuid-1"}, headers=signed(service, path)
    )
    assert response.status_code == 200 and "Speak" not in response.text
    assert "<Hangup" in response.text
    assert (await call_state(service, call["id"]))[:3] == before[:3]
