"""Webhooks: forged, replayed or misaddressed callbacks change nothing."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event, func, make_url, select, update
from tests.dialing import Service, wait_for
from tests.support import TWILIO_SID, Tenant, database_restart
from twilio.request_validator import RequestValidator

from outdial.database import write_transaction
from outdial.dialer import store
from outdial.dialer.wakeup import CHANNEL
from outdial.ids import new_id
from outdial.models import Call, CallEvent
from outdial.telephony import twilio, vobiz
from outdial.telephony.webhooks import Verifier


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


async def test_callbacks_keep_the_apis_metrics_methods_and_error_handlers(
    app: FastAPI, client: httpx.AsyncClient, backend: str
) -> None:
    """Callbacks skip the router (`webhooks.Callbacks`), not what surrounds it: they are
    counted under their route's template, other methods still get the router's 405, and
    a callback that finds the database connection lost gets the app's 503 to retry."""
    call_id = new_id("call")
    refused = await client.post(f"/telephony/twilio/{call_id}/guess/status", data={"A": "1"})
    assert refused.status_code == 403
    assert (await client.get(f"/telephony/twilio/{call_id}/guess/status")).status_code == 405
    assert (await client.post(f"/telephony/twilio/{call_id}/guess")).status_code == 404
    metrics = (await client.get("/metrics")).text
    assert (
        'outdial_http_requests_total{method="POST",'
        'route="/telephony/twilio/{call_id}/{secret}/{kind}",status="4xx"}'
    ) in metrics
    assert call_id not in metrics
    if backend == "sqlite":
        return  # (no connection to lose)
    async with database_restart(app.state.engine):
        answers = [
            await client.post(f"/telephony/vobiz/{new_id('call')}/guess/hangup") for _ in range(40)
        ]
    lost = [answer for answer in answers if answer.status_code == 503]
    assert lost and all(answer.headers["Retry-After"] == "1" for answer in lost)
    assert {answer.status_code for answer in answers} == {503, 403}  # then reconnected


async def ringing_calls(
    app: FastAPI, tenant: Tenant, count: int, secret: str, **fields: Any
) -> list[str]:
    """Call rows written straight into the database: Twilio calls of `tenant`, ringing."""
    number = await tenant.phone_number()
    ids = [new_id("call") for _ in range(count)]
    async with write_transaction(app.state.sessionmaker) as session:
        for i, call_id in enumerate(ids):
            session.add(
                Call(
                    id=call_id,
                    user_id=tenant.user_id,
                    phone_number_id=number["id"],
                    provider="twilio",
                    to_number=f"+1415555{i:04d}",
                    status="ringing",
                    secret_hash=hashlib.sha256(secret.encode()).hexdigest(),
                    **fields,
                )
            )
    return ids


async def test_callbacks_of_one_call_that_arrive_together_read_it_once(
    app: FastAPI, tenant: Tenant
) -> None:
    """A call made before secrets were derived has a random one: its first callbacks often
    arrive at once (answered, then completed at once for a short call), and they share one
    read of the call's secret hash and provider."""
    secret = "one-secret"
    ids = await ringing_calls(app, tenant, 2, secret)
    sessionmaker = app.state.sessionmaker
    reads = 0

    def checked_out(*_args: Any) -> None:  # every read takes a pooled connection
        nonlocal reads
        reads += 1

    pool = sessionmaker.kw["bind"].sync_engine.pool
    event.listen(pool, "checkout", checked_out)
    verifier = Verifier(sessionmaker)
    carriers = app.state.carriers

    def check(call_id: str, with_secret: str = secret) -> Awaitable[bool]:
        return verifier.verify(carriers, call_id, "twilio", with_secret, lambda _token: True)

    try:
        assert await check(ids[0])  # reads the call, then the number's token (kept from now on)
        reads = 0
        assert await asyncio.gather(*(check(ids[1]) for _ in range(8))) == [True] * 8
        assert reads == 1
        assert await asyncio.gather(check(ids[1], "wrong"), check(ids[1])) == [False, True]
        assert reads == 1  # kept after the first read
    finally:
        event.remove(pool, "checkout", checked_out)


async def test_a_derived_secret_is_checked_without_reading_the_call(
    app: FastAPI, tenant: Tenant, other_tenant: Tenant
) -> None:
    """The secret names the caller number and is an HMAC of the call: the verifier reads
    neither the call nor (once kept) the number's token, and refuses the secret of another
    call, another provider or another number, and anything that only looks like one."""
    ids = await ringing_calls(app, tenant, 2, "unused")
    async with app.state.sessionmaker() as session:
        mine = str(await session.scalar(select(Call.phone_number_id).where(Call.id == ids[0])))
    theirs = (await other_tenant.phone_number())["id"]
    carriers = app.state.carriers
    secrets = carriers.call_secrets
    secret, _hash = secrets.new(ids[0], "twilio", mine)
    sessionmaker = app.state.sessionmaker
    reads = 0

    def checked_out(*_args: Any) -> None:
        nonlocal reads
        reads += 1

    verifier = Verifier(sessionmaker)

    def check(call_id: str, provider: str, with_secret: str) -> Awaitable[bool]:
        return verifier.verify(carriers, call_id, provider, with_secret, lambda _token: True)

    assert await check(ids[0], "twilio", secret)  # reads the number's token once
    pool = sessionmaker.kw["bind"].sync_engine.pool
    event.listen(pool, "checkout", checked_out)
    try:
        assert await check(ids[0], "twilio", secret)
        assert reads == 0
        mac = secret.partition(".")[2]
        for call_id, provider, wrong in (
            (ids[1], "twilio", secret),  # another call's
            (ids[0], "vobiz", secret),  # another provider's
            (ids[0], "twilio", f"{theirs}.{mac}"),  # another number named, the MAC kept
            (ids[0], "twilio", secrets.new(ids[0], "twilio", theirs)[0][:-1] + "A"),
            (ids[0], "twilio", f"{mine}."),
            (ids[0], "twilio", "."),
            (ids[0], "twilio", f"{mine}.{mac}\u00e9"),
            (ids[0], "twilio", f"../{mine}.{mac}"),
        ):
            assert not await check(call_id, provider, wrong), (call_id, provider, wrong)
        assert reads == 0
    finally:
        event.remove(pool, "checkout", checked_out)


async def test_an_event_that_tells_nothing_new_is_recorded_in_one_statement(
    app: FastAPI, tenant: Tenant, backend: str
) -> None:
    """Twilio's `in-progress` status callback after its answer request: on PostgreSQL it is
    recorded (and moves `last_event_at`) without locking the call; anything that could
    change the call is left, with nothing written, to `apply_event`."""
    sessionmaker = app.state.sessionmaker
    live, unsure, ringing = await ringing_calls(app, tenant, 3, "s")
    async with write_transaction(sessionmaker) as session:
        await session.execute(
            update(Call).where(Call.id.in_([live, unsure])).values(status="in_progress")
        )
        await session.execute(update(Call).where(Call.id == live).values(answered_by="human"))
    answered = twilio.parse_status(
        {
            "CallSid": "CA1",
            "CallStatus": "in-progress",
            "SequenceNumber": "2",
            "AnsweredBy": "human",
        }
    )
    form = {"CallStatus": "in-progress"}

    async def recorded(call_id: str) -> int:
        async with sessionmaker() as session:
            return int(
                await session.scalar(select(func.count()).where(CallEvent.call_id == call_id)) or 0
            )

    first = await store.record_repeat(sessionmaker, live, answered, form)
    again = await store.record_repeat(sessionmaker, live, answered, form)  # a duplicate
    not_yet = await store.record_repeat(sessionmaker, ringing, answered, form)  # moves it on
    no_verdict = await store.record_repeat(sessionmaker, unsure, answered, form)  # sets one
    if backend == "sqlite":  # one writer at a time: apply_event costs no lock wait there
        assert (first, again, not_yet, no_verdict) == (False, False, False, False)
        assert [await recorded(c) for c in (live, ringing, unsure)] == [0, 0, 0]
        return
    assert (first, again, not_yet, no_verdict) == (True, False, False, False)
    assert [await recorded(c) for c in (live, ringing, unsure)] == [1, 0, 0]
    async with sessionmaker() as session:
        row = (await session.execute(select(Call).where(Call.id == live))).scalar_one()
    assert row.last_event_at is not None and row.provider_call_sid == "CA1"
    assert row.status == "in_progress" and row.answered_by == "human"


async def test_the_answer_in_one_statement_does_what_apply_event_does(
    service: Service, backend: str
) -> None:
    """On PostgreSQL the answer of a ringing campaign call is one statement
    (`store.record_answer`); it must leave the call, its recipient and the counters exactly
    as `apply_event` does, and leave a duplicate (or SQLite) to `apply_event`."""
    tenant = await service.tenant()
    await service.scenario(ring_seconds=[60, 60])
    recipients = [{"phone_number": "+14155550100"}, {"phone_number": "+14155550101"}]
    campaign = await tenant.campaign(recipients=recipients)
    await tenant.ok("POST", f"/campaign/{campaign['id']}/start")

    async def both_ringing() -> Any:
        calls = await tenant.ok("GET", "/calls", params={"campaign_id": campaign["id"]})
        ringing = [c for c in calls if c["status"] == "ringing"]
        return ringing if len(ringing) == 2 else None

    fast, slow = await wait_for(both_ringing)
    sessionmaker = service.app.state.sessionmaker
    form = {"AnsweredBy": "human"}
    event = twilio.parse_answer({"CallSid": fast["provider_call_sid"], **form})
    before = await events_of(service, fast["id"])
    applied = await store.record_answer(sessionmaker, fast["id"], event, form)
    if backend == "sqlite":
        assert applied is None and await events_of(service, fast["id"]) == before
        return
    slow_event = twilio.parse_answer({"CallSid": slow["provider_call_sid"], **form})
    async with write_transaction(sessionmaker) as session:
        expected = await store.apply_event(session, slow["id"], slow_event, form)
    assert applied is not None and expected is not None
    same = ("status", "answered_by", "campaign_id", "media_claimed", "conversation_stored")
    assert [getattr(applied.call, f) for f in same] == [getattr(expected.call, f) for f in same]
    assert (applied.ended, applied.fresh) == (expected.ended, expected.fresh) == (False, True)
    assert applied.call.answered_at is not None
    assert await events_of(service, fast["id"]) == before + 1
    shown = [await tenant.ok("GET", f"/calls/{c['id']}") for c in (fast, slow)]
    assert [(c["status"], c["answered_by"]) for c in shown] == [("in_progress", "human")] * 2
    counts = (await tenant.ok("GET", f"/campaign/{campaign['id']}"))["counts"]
    assert (counts["dialing"], counts["in_progress"]) == (0, 2)
    # Told again, or on a call no longer ringing: nothing written, apply_event decides.
    assert await store.record_answer(sessionmaker, fast["id"], event, form) is None
    assert await events_of(service, fast["id"]) == before + 1
    assert (await tenant.ok("GET", f"/campaign/{campaign['id']}"))["counts"] == counts


async def test_the_one_statement_answer_waits_for_the_call_and_sees_it_ended(
    app: FastAPI, tenant: Tenant, backend: str
) -> None:
    """The answer locks the call first: while another transaction holds it, the answer
    waits, and a call that transaction ended is not moved back to `in_progress`."""
    if backend == "sqlite":
        pytest.skip("record_answer is PostgreSQL's (it writes nothing on SQLite: tested above)")
    sessionmaker = app.state.sessionmaker
    (call_id,) = await ringing_calls(app, tenant, 1, "s")
    event = twilio.parse_answer({"CallSid": "CA2", "AnsweredBy": "human"})
    async with write_transaction(sessionmaker) as session:
        await store.lock_call(session, call_id)
        answer = asyncio.ensure_future(store.record_answer(sessionmaker, call_id, event, {}))
        await asyncio.sleep(0.5)
        assert not answer.done()
        await session.execute(update(Call).where(Call.id == call_id).values(status="completed"))
    assert await answer is None
    async with sessionmaker() as session:
        row = (await session.execute(select(Call).where(Call.id == call_id))).scalar_one()
        logged = await session.scalar(select(func.count()).where(CallEvent.call_id == call_id))
    assert (row.status, row.answered_by, row.answered_at, logged) == ("completed", None, None, 0)


async def test_the_end_of_a_call_locks_its_attempt_and_wakes_the_workers_once(
    service: Service, backend: str
) -> None:
    """On PostgreSQL the end's first statement locks the call, stores the event and locks
    the attempt, whose `NOTIFY` every worker hears at commit; a duplicate end locks
    nothing, tells no one and changes nothing."""
    if backend == "sqlite":
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's (one SQLite process wakes its own dialer)")
    tenant = await service.tenant()
    await service.scenario(ring_seconds=[60, 60])
    campaign = await tenant.campaign(recipients=[{"phone_number": "+14155550100"}])
    await tenant.ok("POST", f"/campaign/{campaign['id']}/start")
    call = await ringing_call_of(tenant, campaign["id"])
    url = make_url(service.app.state.settings.database_url).set(drivername="postgresql")
    listener = await asyncpg.connect(url.render_as_string(hide_password=False))
    heard: list[str] = []
    await listener.add_listener(CHANNEL, lambda *args: heard.append(args[3]))
    try:
        busy = {"CallSid": call["provider_call_sid"], "CallStatus": "busy", "SequenceNumber": "7"}
        event = twilio.parse_status(busy)
        outcomes = []
        for _ in range(2):  # the second is a duplicate delivery
            async with write_transaction(service.app.state.sessionmaker) as session:
                applied = await store.apply_event(session, call["id"], event, busy)
                assert applied is not None
                outcomes.append((applied.ended, applied.fresh))
        await wait_for(lambda: asyncio.sleep(0, heard))
        await asyncio.sleep(0.3)  # time for a second notification, were there one
    finally:
        await listener.close()
    assert outcomes == [(True, True), (False, False)]
    assert heard == [campaign["id"]]
    shown = await tenant.ok("GET", f"/campaign/{campaign['id']}/recipients")
    assert [r["status"] for r in shown] == ["busy"]
    counts = (await tenant.ok("GET", f"/campaign/{campaign['id']}"))["counts"]
    assert (counts["dialing"], counts["in_progress"], counts["busy"]) == (0, 0, 1)


async def ringing_call_of(tenant: Tenant, campaign_id: str) -> dict[str, Any]:
    async def ringing() -> Any:
        calls = await tenant.ok("GET", "/calls", params={"campaign_id": campaign_id})
        return calls[0] if calls and calls[0]["status"] == "ringing" else None

    return dict(await wait_for(ringing))


async def signed_callback(
    service: Service, call: dict[str, Any], kind: str, form: dict[str, str]
) -> httpx.Response:
    """A callback of kind `kind` for `call` (as `GET /calls` shows it), as its provider
    sends one: to the call's own URL (its secret in the path), signed with the test
    numbers' tokens."""
    provider = call["provider"]
    secrets = service.app.state.carriers.call_secrets
    secret, _ = secrets.new(call["id"], provider, call["phone_number_id"])
    path = f"/telephony/{provider}/{call['id']}/{secret}/{kind}"
    if provider == "twilio":
        signature = RequestValidator("tok-secret-1").compute_signature(
            service.base_url + path, form
        )
        headers = {"X-Twilio-Signature": signature}
    else:
        nonce = "12345678901234567890"
        headers = {
            "X-Vobiz-Signature-V3": vobiz.sign_v3(service.base_url + path, nonce, "vobiz-secret-1"),
            "X-Vobiz-Signature-V3-Nonce": nonce,
        }
    return await service.http.post(path, data=form, headers=headers)


@pytest.mark.parametrize("provider", ["twilio", "vobiz"])
async def test_callbacks_of_another_provider_call_move_nothing(
    service: Service, provider: str
) -> None:
    """A ringing call whose provider id is known gets callbacks, signed and with its id and
    secret, that name another provider call (a second placement of its dial): each way a
    callback is applied (progress, the answer, a repeat, the end) leaves the call, its
    events and its recipient as they were, and the answer request gets a hang-up document,
    never the media stream. The call's own callbacks then apply as before."""
    tenant = await service.tenant()
    await service.scenario(ring_seconds=[30, 30])
    if provider == "twilio":
        number = await tenant.phone_number()
        to = "+14155550100"
    else:
        number = await tenant.phone_number("+919876543210", provider="vobiz")
        to = "+919876500001"
    campaign = await tenant.campaign(
        recipients=[{"phone_number": to}], phone_number_id=number["id"], channel=provider
    )
    await tenant.ok("POST", f"/campaign/{campaign['id']}/start")

    async def ringing() -> Any:
        calls = await tenant.ok("GET", "/calls", params={"campaign_id": campaign["id"]})
        return calls[0] if calls and calls[0]["status"] == "ringing" else None

    call = await wait_for(ringing)
    events = await events_of(service, call["id"])

    async def post(kind: str, form: dict[str, str]) -> httpx.Response:
        return await signed_callback(service, call, kind, form)

    other = "CA" + "f" * 32 if provider == "twilio" else "ffffffff-0000-4000-8000-000000000000"
    if provider == "twilio":
        base = {"CallSid": other, "AccountSid": TWILIO_SID, "To": to}
        stray = [
            ("status", {**base, "CallStatus": "initiated", "SequenceNumber": "0"}),
            ("status", {**base, "CallStatus": "ringing", "SequenceNumber": "1"}),
            ("answer", {**base, "CallStatus": "in-progress", "AnsweredBy": "human"}),
            ("status", {**base, "CallStatus": "in-progress", "SequenceNumber": "2"}),
            ("status", {**base, "CallStatus": "completed", "SequenceNumber": "3"}),
        ]
    else:
        base = {"CallUUID": other, "RequestUUID": other, "To": to}
        stray = [
            ("ring", {**base, "Event": "Ring", "CallStatus": "ringing"}),
            ("answer", {**base, "Event": "StartApp", "CallStatus": "in-progress"}),
            ("machine", {**base, "Machine": "true", "CallStatus": "in-progress"}),
            ("hangup", {**base, "CallStatus": "completed", "HangupCauseCode": "4000"}),
        ]
    for kind, form in stray:
        answer = await post(kind, form)
        assert answer.status_code in (200, 204), (kind, answer.text)
        if kind == "answer":
            assert "<Hangup" in answer.text and "Stream" not in answer.text
        now = await tenant.ok("GET", f"/calls/{call['id']}")
        assert now["status"] == "ringing" and now["ended_at"] is None, kind
        assert now["provider_call_sid"] == call["provider_call_sid"], kind
        assert now["answered_by"] is None, kind
        assert await events_of(service, call["id"]) == events, kind
    (person,) = await tenant.ok("GET", f"/campaign/{campaign['id']}/recipients")
    assert person["status"] == "dialing"
    # The call's own answer still applies (its key was not taken by the other call's). On
    # Vobiz the dial's request id names the call as well as its own id does.
    own = dict(stray[2 if provider == "twilio" else 1][1])
    if provider == "twilio":
        own["CallSid"] = call["provider_call_sid"]
    else:
        own.update({"CallUUID": "0" * 8 + other[8:], "RequestUUID": call["provider_call_sid"]})
    answered = await post("answer", own)
    assert answered.status_code == 200 and "Stream" in answered.text
    events = await events_of(service, call["id"])
    # Once it is answered, the other call's news of its own answer (Twilio's status
    # callback, recorded alone when it repeats the call's) or of its end changes nothing.
    later = stray[3:]
    for kind, form in later:
        assert (await post(kind, form)).status_code == 204, kind
        now = await tenant.ok("GET", f"/calls/{call['id']}")
        assert (now["status"], now["ended_at"]) == ("in_progress", None), kind
        assert await events_of(service, call["id"]) == events, kind
    (person,) = await tenant.ok("GET", f"/campaign/{campaign['id']}/recipients")
    assert person["status"] == "in_progress"


async def test_a_twilio_end_that_overtakes_its_answer_is_still_an_answered_call(
    service: Service,
) -> None:
    """Twilio's callbacks may arrive out of order: a person answers during the answering-
    machine wait and hangs up (no answer request is made), and `completed` with its billed
    `CallDuration` comes before `in-progress`. The attempt is `completed`, as in order; it
    was `failed` (no answer recorded yet), and a policy retrying failures called again a
    person who had answered."""
    tenant = await service.tenant()
    call = await ringing_call(service, tenant)
    base = {"CallSid": call["provider_call_sid"], "AccountSid": TWILIO_SID}
    for form in (
        {**base, "CallStatus": "completed", "CallDuration": "4", "SequenceNumber": "3"},
        {**base, "CallStatus": "in-progress", "SequenceNumber": "2"},
    ):
        assert (await signed_callback(service, call, "status", form)).status_code == 204
    ended = await tenant.ok("GET", f"/calls/{call['id']}")
    assert (ended["status"], ended["duration_seconds"]) == ("completed", 4)
    (person,) = await tenant.ok("GET", f"/campaign/{call['campaign_id']}/recipients")
    assert (person["status"], person["last_outcome"]) == ("completed", "completed")


async def test_a_repeated_account_refusal_pauses_when_the_first_could_not(
    service: Service,
) -> None:
    """Vobiz's hang-up for the account's sake (1010, out of credits) pauses the campaign
    after the hang-up's own transaction. Should the process die between the two (the end
    written, no pause), Vobiz's repeat of the hang-up, which changes nothing else, pauses
    it."""
    tenant = await service.tenant()
    await service.scenario(ring_seconds=[30, 30])
    number = await tenant.phone_number("+919876543210", provider="vobiz")
    campaign = await tenant.campaign(
        recipients=[{"phone_number": "+919876500001"}],
        phone_number_id=number["id"],
        channel="vobiz",
    )
    await tenant.ok("POST", f"/campaign/{campaign['id']}/start")

    async def ringing() -> Any:
        calls = await tenant.ok("GET", "/calls", params={"campaign_id": campaign["id"]})
        return calls[0] if calls and calls[0]["status"] == "ringing" else None

    call = await wait_for(ringing)
    form = {
        "CallUUID": call["provider_call_sid"],
        "RequestUUID": call["provider_call_sid"],
        "CallStatus": "failed",
        "HangupCauseCode": "1010",
        "HangupCause": "CALL_REJECTED",
        "Duration": "0",
    }
    sessionmaker = service.app.state.sessionmaker
    first = await store.apply_alone(sessionmaker, call["id"], vobiz.parse_hangup(form), form)
    assert first is not None and first.ended  # the end written; its pause never made
    assert (await tenant.ok("GET", f"/campaign/{campaign['id']}"))["status"] == "running"
    assert (await signed_callback(service, call, "hangup", form)).status_code == 204
    paused = await tenant.ok("GET", f"/campaign/{campaign['id']}")
    assert paused["status"] == "paused" and "out of credits" in paused["status_reason"]
