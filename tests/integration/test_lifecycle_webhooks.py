"""Webhook endpoints (register, read, delete; the secret shown once and sealed at rest) and the
outbox: lifecycle changes queue their events in their own transaction, and only then.

No deliverer runs here (the session app has OUTDIAL_WEBHOOKS off): what is checked is what the
outbox holds, through the delivery log. Sending is in test_webhook_delivery.py.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any, cast

import pytest
from fastapi import FastAPI
from sqlalchemy import Table, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from tests.support import Tenant

from outdial.database import write_transaction
from outdial.dialer import store
from outdial.dialer.claim import DialJob
from outdial.dialer.sender import DialerSettings, Sender
from outdial.ids import new_id
from outdial.models import (
    Call,
    CampaignRecipient,
    PhoneNumber,
    WebhookEndpoint,
    WebhookEvent,
    utcnow,
)
from outdial.telephony import twilio
from outdial.webhook import events, repository

HOOK = "http://127.0.0.1:9/hooks"  # never sent to: no deliverer runs in these tests
FAR_FUTURE = "2190-01-01T00:00:00Z"
ANN = "+14155550101"


async def register(tenant: Tenant, **fields: Any) -> dict[str, Any]:
    return await tenant.ok("POST", "/webhooks", json={"url": HOOK, **fields})


async def logged(tenant: Tenant, webhook_id: str, **params: Any) -> list[dict[str, Any]]:
    """The endpoint's deliveries, oldest first."""
    response = await tenant.get(
        f"/webhooks/{webhook_id}/deliveries", params={"limit": 500, **params}
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-total-count"] == str(len(response.json()))
    return list(reversed(response.json()))


async def stored_events(app: FastAPI, user_id: str) -> int:
    async with app.state.sessionmaker() as session:
        query = (
            select(func.count()).select_from(WebhookEvent).where(WebhookEvent.user_id == user_id)
        )
        return int(await session.scalar(query) or 0)


async def first_call(
    session: AsyncSession, tenant: Tenant, campaign_id: str, **fields: Any
) -> tuple[CampaignRecipient, Call]:
    """The campaign's one recipient, and a first Twilio call to it (stored, flushed)."""
    recipient = (
        await session.scalars(
            select(CampaignRecipient).where(CampaignRecipient.campaign_id == campaign_id)
        )
    ).one()
    call = Call(
        id=new_id("call"),
        user_id=tenant.user_id,
        campaign_id=campaign_id,
        recipient_id=recipient.id,
        attempt=1,
        provider="twilio",
        to_number=recipient.phone_number,
        **fields,
    )
    session.add(call)
    await session.flush()
    return recipient, call


async def test_an_endpoint_shows_its_secret_once_and_keeps_it_sealed(
    app: FastAPI, tenant: Tenant
) -> None:
    created = await register(tenant, events=["campaign.completed"], description="CRM sync")
    secret = created.pop("secret")
    assert secret.startswith("whsec_") and len(secret) > 40
    assert created["id"].startswith("wh_") and created["url"] == HOOK
    assert created["events"] == ["campaign.completed"] and created["description"] == "CRM sync"

    shown = await tenant.ok("GET", f"/webhooks/{created['id']}")
    assert shown == created
    listing = await tenant.get("/webhooks")
    assert listing.json() == [created] and listing.headers["x-total-count"] == "1"
    assert secret not in listing.text
    async with app.state.sessionmaker() as session:
        row = await session.get(WebhookEndpoint, created["id"])
    assert row is not None and secret.encode() not in row.secret
    assert app.state.credential_box.open(row.secret) == {"secret": secret}

    everything = await register(tenant)
    assert everything["events"] is None and everything["secret"] != secret

    assert (await tenant.request("DELETE", f"/webhooks/{created['id']}")).status_code == 204
    for method in ("GET", "DELETE"):
        gone = await tenant.request(method, f"/webhooks/{created['id']}")
        assert (gone.status_code, gone.json()) == (404, {"detail": "Webhook not found"})
    assert [w["id"] for w in await tenant.ok("GET", "/webhooks")] == [everything["id"]]


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"url": "ftp://example.com/x"}, ["body", "url"]),
        ({"url": "example.com/hooks"}, ["body", "url"]),
        ({"url": "https://"}, ["body", "url"]),
        ({"url": "https://exa mple.com/"}, ["body", "url"]),
        ({"url": "https://example.com:port/"}, ["body", "url"]),
        ({"url": "http://xn--a.example/"}, ["body", "url"]),
        ({"url": "http://\u00ad.example/"}, ["body", "url"]),
        ({"url": HOOK, "events": ["call.exploded"]}, ["body", "events", 0]),
        ({"url": HOOK, "events": []}, ["body", "events"]),
        ({"url": HOOK, "events": ["call.ended", "call.ended"]}, ["body", "events"]),
        ({"url": HOOK, "secret": "mine"}, ["body", "secret"]),
        ({}, ["body", "url"]),
    ],
)
async def test_a_bad_endpoint_is_a_422(
    tenant: Tenant, body: dict[str, Any], loc: list[Any]
) -> None:
    response = await tenant.post("/webhooks", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == loc
    assert await tenant.ok("GET", "/webhooks") == []


async def test_lifecycle_actions_queue_their_events_and_refused_ones_queue_nothing(
    tenant: Tenant,
) -> None:
    everything = await register(tenant)
    completions = await register(tenant, events=["campaign.completed"])
    calls_only = await register(tenant, events=["call.ended"])
    campaign = await tenant.campaign(
        recipients=[{"phone_number": ANN, "metadata": {"name": "Ann"}}],
        scheduleStartTime=FAR_FUTURE,
    )
    path = f"/campaign/{campaign['id']}"
    steps = [("pause", 409), ("start", 200), ("pause", 200), ("pause", 409), ("start", 409)]
    steps += [("resume", 200), ("resume", 409), ("stop", 200), ("stop", 409), ("resume", 409)]
    for action, status in steps:
        response = await tenant.post(f"{path}/{action}")
        assert response.status_code == status, (action, response.text)

    sent = await logged(tenant, everything["id"])
    assert [d["event"]["type"] for d in sent] == [
        "campaign.started",
        "campaign.paused",
        "campaign.resumed",
        "campaign.completed",
    ]
    started, paused, _resumed, completed = (d["event"] for d in sent)
    assert started["data"]["campaign_id"] == campaign["id"]
    assert started["data"]["status"] == "running" and started["data"]["started_at"]
    assert started["data"]["counts"]["pending"] == 1 and started["data"]["counts"]["total"] == 1
    assert paused["data"]["status"] == "paused"
    assert completed["data"]["status"] == "completed"
    assert completed["data"]["ended_reason"] == "stopped" and completed["data"]["completed_at"]
    assert completed["data"]["counts"]["cancelled"] == 1
    assert completed["data"]["counts"]["pending"] == 0
    for delivery in sent:
        assert delivery["id"].startswith("whd_") and delivery["event"]["id"].startswith("evt_")
        assert delivery["status"] == "pending" and delivery["attempts"] == []
        assert delivery["next_attempt_at"] and delivery["delivered_at"] is None

    only = await logged(tenant, completions["id"])
    assert [d["event"] for d in only] == [completed]  # the same event, id included
    assert await logged(tenant, calls_only["id"]) == []
    assert await logged(tenant, everything["id"], status="succeeded") == []


async def test_a_refused_start_queues_nothing(app: FastAPI, tenant: Tenant) -> None:
    hook = await register(tenant)
    empty = await tenant.campaign()
    assert (await tenant.post(f"/campaign/{empty['id']}/start")).status_code == 409
    broken = await tenant.campaign(
        assistant_id=empty["assistant_id"],
        phone_number_id=empty["phone_number_id"],
        recipient_list_id=(await tenant.recipient_list(f"phone_number\n{ANN}\n"))["id"],
        opening_message_template="Hi {{ name }}",  # the list's row has no name: start fails
    )
    assert (await tenant.post(f"/campaign/{broken['id']}/start")).status_code == 422
    assert (await tenant.ok("GET", f"/campaign/{broken['id']}"))["status"] == "draft"
    assert await logged(tenant, hook["id"]) == []
    assert await stored_events(app, tenant.user_id) == 0


async def test_without_a_matching_endpoint_nothing_is_stored(app: FastAPI, tenant: Tenant) -> None:
    await register(tenant, events=["recipient.final"])
    campaign = await tenant.campaign(
        recipients=[{"phone_number": ANN}], scheduleStartTime=FAR_FUTURE
    )
    await tenant.ok("POST", f"/campaign/{campaign['id']}/start")
    await tenant.ok("POST", f"/campaign/{campaign['id']}/stop")
    assert await stored_events(app, tenant.user_id) == 0


async def test_an_event_is_rolled_back_with_its_transaction(app: FastAPI, tenant: Tenant) -> None:
    hook = await register(tenant)
    with pytest.raises(RuntimeError):
        async with write_transaction(app.state.sessionmaker) as session:
            assert await events.emit(session, tenant.user_id, "campaign.started", {"n": 1})
            raise RuntimeError("the change failed after its event was queued")
    assert await logged(tenant, hook["id"]) == []
    assert await stored_events(app, tenant.user_id) == 0
    with pytest.raises(ValueError, match="unknown event type"):
        async with app.state.sessionmaker() as session:
            await events.emit(session, tenant.user_id, "campaign.exploded", {})


async def test_call_and_recipient_events_carry_what_a_crm_needs(
    app: FastAPI, tenant: Tenant
) -> None:
    everything = await register(tenant)
    ended_only = await register(tenant, events=["call.ended"])
    campaign = await tenant.campaign(
        recipients=[{"phone_number": ANN, "metadata": {"name": "Ann"}}]
    )
    now = utcnow()
    async with write_transaction(app.state.sessionmaker) as session:
        recipient, call = await first_call(
            session,
            tenant,
            campaign["id"],
            from_number="+14155550123",
            status="initiated",
            provider_call_sid="CA123",
            started_at=now - timedelta(seconds=50),
            created_at=now - timedelta(seconds=55),
        )
        await events.emit_call(session, call.id, "call.started")
        # The dialer ends calls with Core statements: the session's copy of the call is stale.
        calls = cast(Table, Call.__table__)
        await session.execute(
            update(calls)
            .where(calls.c.id == call.id)
            .values(
                status="completed",
                answered_by="human",
                answered_at=now - timedelta(seconds=42),
                ended_at=now,
                duration_seconds=42,
                summary="Renewal confirmed.",
            )
        )
        await events.emit_call(session, call.id, "call.ended")
        # ORM changes not flushed yet (the sessions do not autoflush) are seen too.
        recipient.status, recipient.attempts = "completed", 1
        recipient.last_outcome, recipient.last_call_id = "completed", call.id
        await events.emit_recipient_final(session, recipient.id)

    sent = [d["event"] for d in await logged(tenant, everything["id"])]
    assert [e["type"] for e in sent] == ["call.started", "call.ended", "recipient.final"]
    started, ended, final = (e["data"] for e in sent)
    assert started["call_id"] == call.id and started["status"] == "initiated"
    assert started["recipient_id"] == f"rcp_{recipient.id}" and started["to_number"] == ANN
    assert "outcome" not in started
    base = app.state.settings.resolved_public_base_url
    assert ended["outcome"] == "completed" and ended["duration_seconds"] == 42
    assert ended["summary"] == "Renewal confirmed." and ended["answered_by"] == "human"
    assert ended["transcript_url"] == f"{base}/calls/{call.id}"
    assert ended["ended_at"].endswith("Z")
    assert final == {
        "campaign_id": campaign["id"],
        "recipient_id": f"rcp_{recipient.id}",
        "phone_number": ANN,
        "status": "completed",
        "status_reason": None,
        "attempts": 1,
        "last_outcome": "completed",
        "last_call_id": call.id,
        "metadata": {"name": "Ann"},
    }
    assert [d["event"]["type"] for d in await logged(tenant, ended_only["id"])] == ["call.ended"]


async def test_a_call_that_ends_before_its_dial_is_recorded_is_started_first_once(
    app: FastAPI, tenant: Tenant
) -> None:
    """A call shorter than the dial's bookkeeping: the provider's final callback is written
    before the dialer records that the provider took the dial. The end queues `call.started`
    before `call.ended`; the dialer's record, coming after, queues no second one."""
    hook = await register(tenant)
    number = await tenant.phone_number()
    campaign = await tenant.campaign(
        recipients=[{"phone_number": ANN}], phone_number_id=number["id"]
    )
    sessionmaker = app.state.sessionmaker
    async with write_transaction(sessionmaker) as session:
        recipient, call = await first_call(
            session,
            tenant,
            campaign["id"],
            phone_number_id=number["id"],
            status="queued",  # sent, the dialer's record of it still to come
            dial_started_at=utcnow(),
        )
        recipient.status, recipient.attempts, recipient.last_call_id = "dialing", 1, call.id
    form = {"CallSid": "CA77", "CallStatus": "completed", "CallDuration": "0"}
    applied = await store.apply_alone(sessionmaker, call.id, twilio.parse_status(form), form)
    assert applied is not None and applied.ended
    async with sessionmaker() as session:
        phone = await session.get(PhoneNumber, number["id"])
    assert phone is not None
    job = DialJob(call.id, campaign["id"], phone, ANN, "s", utcnow(), 30)
    dialer = Sender(sessionmaker, app.state.carriers, DialerSettings("http://127.0.0.1"))
    await dialer._dial_sent(job, "CA77")

    sent = [d["event"] for d in await logged(tenant, hook["id"])]
    assert [e["type"] for e in sent] == ["call.started", "call.ended", "recipient.final"]
    assert sent[0]["data"]["status"] == "queued" and sent[1]["data"]["status"] == "completed"
    # (both name the provider's call: the end wrote the id before `call.started` read it)
    assert sent[0]["data"]["provider_call_sid"] == sent[1]["data"]["provider_call_sid"] == "CA77"
    shown = await tenant.ok("GET", f"/calls/{call.id}")
    assert (shown["status"], shown["provider_call_sid"]) == ("completed", "CA77")


async def test_a_batch_of_final_recipients_is_queued_at_once(app: FastAPI, tenant: Tenant) -> None:
    people = [{"phone_number": f"+1415555010{n}", "metadata": {"n": n}} for n in range(3)]
    campaign = await tenant.campaign(recipients=people)
    async with write_transaction(app.state.sessionmaker) as session:
        nobody = await events.emit_recipients_final(session, tenant.user_id, [1, 2])
    assert nobody == []  # no endpoint: nothing stored
    hook = await register(tenant, events=["recipient.final"])
    async with write_transaction(app.state.sessionmaker) as session:
        recipients = (
            await session.scalars(
                select(CampaignRecipient)
                .where(CampaignRecipient.campaign_id == campaign["id"])
                .order_by(CampaignRecipient.position)
            )
        ).all()
        for recipient in recipients[:2]:
            recipient.status, recipient.status_reason = "skipped", "dnc"
        queued = await events.emit_recipients_final(
            session, tenant.user_id, [r.id for r in recipients[:2]]
        )
        assert await events.emit_recipients_final(session, tenant.user_id, []) == []
    sent = [d["event"] for d in await logged(tenant, hook["id"])]
    assert sorted(e["id"] for e in sent) == sorted(queued) and len(queued) == 2
    assert sorted((e["data"]["phone_number"], e["data"]["status"]) for e in sent) == [
        ("+14155550100", "skipped"),
        ("+14155550101", "skipped"),
    ]
    assert {e["data"]["status_reason"] for e in sent} == {"dnc"}


async def test_an_accounts_endpoints_are_read_once_per_transaction_not_beyond(
    app: FastAPI, tenant: Tenant
) -> None:
    """The end of a call emits two events and reads the endpoints once; an endpoint added
    after a transaction is seen by the session's next one."""
    async with app.state.sessionmaker() as session:
        async with session.begin():
            assert await repository.subscribers(session, tenant.user_id, "call.ended") == []
            hook = await register(tenant)  # another session, committed
            assert await repository.subscribers(session, tenant.user_id, "recipient.final") == []
        async with session.begin():
            assert await repository.subscribers(session, tenant.user_id, "call.ended") == [
                hook["id"]
            ]


async def test_an_endpoint_deleted_as_an_event_is_written_does_not_fail_the_change(
    app: FastAPI, tenant: Tenant, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`DELETE /webhooks/{id}` committing between an event's read of the account's endpoints
    and its deliveries' insert (PostgreSQL): the endpoint is read `FOR KEY SHARE`, so the
    delete waits for the event's transaction and takes the delivery with it. Before, the
    insert met the deleted endpoint's foreign key and the change that emitted the event (a
    pause here; a provider callback too) failed with a 500."""
    if backend != "postgresql":
        pytest.skip("row locks are PostgreSQL's (SQLite writes one at a time)")
    hook = await register(tenant)
    campaign = await tenant.campaign(
        recipients=[{"phone_number": ANN}], scheduleStartTime="2190-01-01T00:00:00Z"
    )
    await tenant.ok("POST", f"/campaign/{campaign['id']}/start")  # (waits for its start)
    read = repository.subscribers
    deleting: list[asyncio.Task[Any]] = []

    async def then_deleted(session: Any, user_id: Any, type: str) -> list[str]:
        found = await read(session, user_id, type)
        deleting.append(asyncio.create_task(tenant.request("DELETE", f"/webhooks/{hook['id']}")))
        await asyncio.sleep(0.5)  # the delete reaches PostgreSQL and waits for this one
        return found

    monkeypatch.setattr(repository, "subscribers", then_deleted)
    paused = await tenant.request("POST", f"/campaign/{campaign['id']}/pause")
    assert paused.status_code == 200, paused.text
    (deleted,) = await asyncio.gather(*deleting)
    assert deleted.status_code == 204
    assert (await tenant.get(f"/webhooks/{hook['id']}")).status_code == 404
