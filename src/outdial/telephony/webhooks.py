"""Provider callbacks: verified, recorded once, applied so that a call only moves forward.

Each callback URL carries our call id and a per-call secret, so a callback finds its call
even when the provider's id was never stored. A missing or wrong signature (or secret) is
a 403 that changes nothing. The event is stored under a unique (call, key); a duplicate
finds the key taken and does nothing. Out-of-order callbacks cannot move a call backwards.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable

from fastapi import APIRouter, Request, Response
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from outdial.database import write_transaction
from outdial.dialer import store
from outdial.dialer.wakeup import notify
from outdial.ids import is_well_formed
from outdial.models import Call, CallEvent, PhoneNumber, utcnow
from outdial.telephony import twilio, vobiz
from outdial.telephony.base import CallEvent as Event
from outdial.telephony.base import CallState, Verdict, moves_forward

router = APIRouter(prefix="/telephony", include_in_schema=False)
log = logging.getLogger("outdial.telephony")

TWILIO_PARSERS: dict[str, Callable[[dict[str, str]], Event]] = {
    "answer": twilio.parse_answer,
    "status": twilio.parse_status,
}
VOBIZ_PARSERS: dict[str, Callable[[dict[str, str]], Event]] = {
    "ring": vobiz.parse_ring,
    "answer": vobiz.parse_answer,
    "machine": vobiz.parse_machine,
    "hangup": vobiz.parse_hangup,
}
FORBIDDEN = Response("forbidden", status_code=403)


def _secret_ok(call: Call, secret: str) -> bool:
    digest = hashlib.sha256(secret.encode()).hexdigest()
    return call.secret_hash is not None and hmac.compare_digest(digest, call.secret_hash)


def _public_url(request: Request) -> str:
    base = request.app.state.settings.resolved_public_base_url
    query = f"?{request.url.query}" if request.url.query else ""
    return f"{base}{request.url.path}{query}"


def _signed(request: Request, provider: str, form: dict[str, str], token: str) -> bool:
    url = _public_url(request)
    if provider == "twilio":
        return twilio.verify(url, form, request.headers.get("X-Twilio-Signature"), token)
    return vobiz.verify(
        url,
        request.headers.get("X-Vobiz-Signature-V3-Nonce"),
        request.headers.get("X-Vobiz-Signature-V3"),
        token,
    )


async def _record(session: AsyncSession, call_id: str, event: Event, form: dict[str, str]) -> bool:
    """Store the event once (one statement); False when this exact event was seen before."""
    dialect = session.get_bind().dialect.name
    statement = (pg_insert if dialect == "postgresql" else sqlite_insert)(CallEvent).values(
        call_id=call_id, dedupe_key=event.dedupe_key[:80], payload=form, received_at=utcnow()
    )
    statement = statement.on_conflict_do_nothing(index_elements=["call_id", "dedupe_key"])
    return (await session.execute(statement.returning(CallEvent.id))).first() is not None


def _news(call: Call, event: Event) -> bool:
    """Whether the event could change the call (as last read); if not, it is only logged."""
    return bool(
        (event.state is not None and moves_forward(call.status, event.state))
        or (event.verdict is not None and call.answered_by in (None, Verdict.UNKNOWN))
        or (event.provider_call_id and not call.provider_call_sid)
    )


async def apply_event(session: AsyncSession, call: Call, event: Event) -> bool:
    """Move the call forward by this event; True when the attempt ended now."""
    now = utcnow()
    call.last_event_at = now
    if event.provider_call_id and not call.provider_call_sid:
        call.provider_call_sid = event.provider_call_id
    if event.verdict is not None and call.answered_by in (None, Verdict.UNKNOWN):
        call.answered_by = event.verdict
    if event.state is None or not moves_forward(call.status, event.state):
        return False
    if event.state in (CallState.QUEUED, CallState.INITIATED, CallState.RINGING):
        call.status = event.state
        return False
    if event.state is CallState.IN_PROGRESS:
        call.status = event.state
        await store.mark_answered(session, call, now)
        return False
    return await store.finish_call(
        session, call, event.state, now, reason=event.reason, duration=event.duration_seconds
    )


async def _verified(
    request: Request, provider: str, call_id: str, secret: str, form: dict[str, str]
) -> Call | None:
    """The call, if the per-call secret and the provider's signature both check out."""
    if not is_well_formed(call_id):
        return None
    async with request.app.state.sessionmaker() as session:
        row = (
            await session.execute(
                select(Call, PhoneNumber)
                .join(PhoneNumber, PhoneNumber.id == Call.phone_number_id)
                .where(Call.id == call_id)
            )
        ).first()
    if row is None:
        return None
    call, number = row
    token = request.app.state.carriers.auth_token(number)
    if (
        call.provider != provider
        or not _secret_ok(call, secret)
        or not _signed(request, provider, form, token)
    ):
        return None
    return call


async def _handle(
    request: Request, provider: str, call_id: str, secret: str, kind: str
) -> tuple[Response | None, Call | None, Event | None, bool]:
    """Verify, then record and apply. An event that cannot change the call is only logged,
    in a one-statement transaction; one that can is applied with the call row locked."""
    parsers = TWILIO_PARSERS if provider == "twilio" else VOBIZ_PARSERS
    if kind not in parsers:
        return FORBIDDEN, None, None, False
    form = {key: str(value) for key, value in (await request.form()).items()}
    call = await _verified(request, provider, call_id, secret, form)
    if call is None:
        return FORBIDDEN, None, None, False
    event = parsers[kind](form)
    async with write_transaction(request.app.state.sessionmaker) as session:
        if not _news(call, event):
            await _record(session, call.id, event, form)
            return None, call, event, False
        locked = await store.lock_call(session, call.id)
        assert locked is not None
        ended = await _record(session, locked.id, event, form) and await apply_event(
            session, locked, event
        )
        if ended and locked.campaign_id:
            await notify(session, locked.campaign_id)
    return None, locked, event, ended


async def _after(request: Request, call: Call, ended: bool) -> None:
    """Outside the event's transaction: complete a finished campaign, wake the dialer."""
    if not ended or not call.campaign_id:
        return
    sessionmaker = request.app.state.sessionmaker
    if await store.nothing_left(sessionmaker, call.campaign_id):
        async with write_transaction(sessionmaker) as session:
            await store.complete_if_done(session, call.campaign_id, utcnow())
    dialer = getattr(request.app.state, "dialer", None)
    if dialer is not None:
        dialer.wakeup.campaign(call.campaign_id)


@router.post("/twilio/{call_id}/{secret}/{kind}")
async def twilio_callback(call_id: str, secret: str, kind: str, request: Request) -> Response:
    refused, call, event, ended = await _handle(request, "twilio", call_id, secret, kind)
    if refused is not None or call is None or event is None:
        return refused or FORBIDDEN
    await _after(request, call, ended)
    if kind == "answer":
        return Response(answer_twiml(request, call, secret), media_type="application/xml")
    return Response(status_code=204)


@router.post("/vobiz/{call_id}/{secret}/{kind}")
async def vobiz_callback(call_id: str, secret: str, kind: str, request: Request) -> Response:
    refused, call, event, ended = await _handle(request, "vobiz", call_id, secret, kind)
    if refused is not None or call is None or event is None:
        return refused or FORBIDDEN
    await _after(request, call, ended)
    if kind == "machine" and event.verdict is Verdict.MACHINE:
        await _hang_up(request, call)
    if kind == "answer":
        return Response(answer_vobiz_xml(request, call, secret), media_type="application/xml")
    return Response(status_code=204)


async def _hang_up(request: Request, call: Call) -> None:
    """A machine answered a Vobiz call: end it (the voicemail drop comes with the voice runtime)."""
    if not call.provider_call_sid:
        return
    async with request.app.state.sessionmaker() as session:
        number = await session.get(PhoneNumber, call.phone_number_id)
    if number is None:
        return
    try:
        await request.app.state.carriers.for_number(number).hangup(call.provider_call_sid)
    except Exception as exc:  # the hangup callback, or the reaper, still ends the call
        log.warning("hang-up of %s failed: %s", call.id, exc)


def _media_url(request: Request, provider: str) -> str:
    base = request.app.state.settings.resolved_public_base_url
    return (
        base.replace("https://", "wss://").replace("http://", "ws://")
        + f"/telephony/{provider}/media"
    )


def answer_twiml(request: Request, call: Call, secret: str) -> str:
    """Machines get a hang-up; people get the media stream (parameters, as Twilio drops queries)."""
    if call.answered_by == Verdict.MACHINE:
        return '<?xml version="1.0" encoding="UTF-8"?><Response><Hangup/></Response>'
    from twilio.twiml.voice_response import Connect, VoiceResponse

    response = VoiceResponse()
    connect = Connect()
    stream = connect.stream(url=_media_url(request, "twilio"))
    stream.parameter(name="call_id", value=call.id)
    stream.parameter(name="secret", value=secret)
    response.append(connect)
    return str(response)


def answer_vobiz_xml(request: Request, call: Call, secret: str) -> str:
    url = f"{_media_url(request, 'vobiz')}/{call.id}/{secret}"
    return (
        '<?xml version="1.0" encoding="UTF-8"?><Response>'
        '<Stream bidirectional="true" keepCallAlive="true" '
        f'contentType="audio/x-mulaw;rate=8000">{url}</Stream></Response>'
    )
