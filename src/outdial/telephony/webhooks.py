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
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from outdial.database import read_alone, write_transaction
from outdial.dialer import store
from outdial.dialer.store import calls
from outdial.dialer.wakeup import notify
from outdial.ids import is_well_formed
from outdial.models import Call, PhoneNumber, utcnow
from outdial.telephony import twilio, vobiz
from outdial.telephony.base import CallEvent as Event
from outdial.telephony.base import Verdict
from outdial.telephony.registry import Carriers

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
Signed = Callable[[str], bool]  # does the request's signature check out with this token?


@dataclass(frozen=True)
class CallPass:
    """What checking a callback needs to know of its call; fixed once the call exists."""

    provider: str
    secret_hash: str | None
    phone_number_id: str | None


class Verifier:
    """Checks callbacks against the call's secret and the provider's signature.

    A call's secret hash and provider never change, so they are kept (a bounded LRU) after
    the first callback reads them: the next callbacks of the call cost no database read.
    Each number's auth token is kept too; a signature that fails with a kept token is
    checked once more against the token in the database (the user may have rotated it).
    """

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], size: int = 100_000):
        self.sessionmaker = sessionmaker
        self.size = size
        self._calls: OrderedDict[str, CallPass] = OrderedDict()
        self._tokens: dict[str, str] = {}

    async def verify(
        self, carriers: Carriers, call_id: str, provider: str, secret: str, signed: Signed
    ) -> bool:
        if not is_well_formed(call_id):
            return False
        known = await self._call(call_id)
        if known is None or known.provider != provider or known.phone_number_id is None:
            return False
        digest = hashlib.sha256(secret.encode()).hexdigest()
        if known.secret_hash is None or not hmac.compare_digest(digest, known.secret_hash):
            return False
        token = self._tokens.get(known.phone_number_id)
        if token is not None and signed(token):
            return True
        fresh = await self._token(carriers, known.phone_number_id)
        return fresh is not None and fresh != token and signed(fresh)

    async def _call(self, call_id: str) -> CallPass | None:
        known = self._calls.get(call_id)
        if known is not None:
            self._calls.move_to_end(call_id)
            return known
        rows = await read_alone(
            self.sessionmaker,
            select(calls.c.provider, calls.c.secret_hash, calls.c.phone_number_id).where(
                calls.c.id == call_id
            ),
        )
        if not rows:
            return None
        row = rows[0]
        known = self._calls[call_id] = CallPass(row.provider, row.secret_hash, row.phone_number_id)
        if len(self._calls) > self.size:
            self._calls.popitem(last=False)
        return known

    async def _token(self, carriers: Carriers, phone_number_id: str) -> str | None:
        async with self.sessionmaker() as session:
            number = await session.get(PhoneNumber, phone_number_id)
        if number is None:
            return None
        token = self._tokens[phone_number_id] = carriers.auth_token(number)
        return token


def _public_url(request: Request) -> str:
    base = request.app.state.settings.resolved_public_base_url
    query = f"?{request.url.query}" if request.url.query else ""
    return f"{base}{request.url.path}{query}"


def _signature_check(request: Request, provider: str, form: dict[str, str]) -> Signed:
    url = _public_url(request)
    if provider == "twilio":
        signature = request.headers.get("X-Twilio-Signature")
        return lambda token: twilio.verify(url, form, signature, token)
    nonce = request.headers.get("X-Vobiz-Signature-V3-Nonce")
    signature = request.headers.get("X-Vobiz-Signature-V3")
    return lambda token: vobiz.verify(url, nonce, signature, token)


async def _form(request: Request) -> dict[str, str]:
    """The callback's fields; providers post `application/x-www-form-urlencoded`."""
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return dict(parse_qsl((await request.body()).decode("utf-8", "replace"), True))
    return {key: str(value) for key, value in (await request.form()).items()}


async def _handle(
    request: Request, provider: str, call_id: str, secret: str, kind: str
) -> tuple[Response | None, store.Applied | None, Event | None]:
    """Verify, then record and apply the event: progress alone in one statement, anything
    else with the call row locked. `applied` is None for progress."""
    parsers = TWILIO_PARSERS if provider == "twilio" else VOBIZ_PARSERS
    if kind not in parsers:
        return FORBIDDEN, None, None
    form = await _form(request)
    checked = await request.app.state.verifier.verify(
        request.app.state.carriers,
        call_id,
        provider,
        secret,
        _signature_check(request, provider, form),
    )
    if not checked:
        return FORBIDDEN, None, None
    event = parsers[kind](form)
    if store.is_progress(event):
        await store.record_progress(request.app.state.sessionmaker, call_id, event, form)
        return None, None, event
    async with write_transaction(request.app.state.sessionmaker) as session:
        applied = await store.apply_event(session, call_id, event, form)
        if applied is None:
            return FORBIDDEN, None, None
        if applied.ended and applied.call.campaign_id:
            await notify(session, applied.call.campaign_id)
    return None, applied, event


async def _after(request: Request, applied: store.Applied) -> None:
    """Outside the event's transaction: complete a finished campaign, wake the dialer."""
    campaign_id = applied.call.campaign_id
    if not applied.ended or not campaign_id:
        return
    sessionmaker = request.app.state.sessionmaker
    if await store.nothing_left(sessionmaker, campaign_id):
        async with write_transaction(sessionmaker) as session:
            await store.complete_if_done(session, campaign_id, utcnow())
    dialer = getattr(request.app.state, "dialer", None)
    if dialer is not None:
        dialer.wakeup.campaign(campaign_id)


@router.post("/twilio/{call_id}/{secret}/{kind}")
async def twilio_callback(call_id: str, secret: str, kind: str, request: Request) -> Response:
    refused, applied, _event = await _handle(request, "twilio", call_id, secret, kind)
    if refused is not None:
        return refused
    if applied is None:  # progress only
        return Response(status_code=204)
    await _after(request, applied)
    if kind == "answer":
        twiml = answer_twiml(request, applied.call, secret)
        return Response(twiml, media_type="application/xml")
    return Response(status_code=204)


@router.post("/vobiz/{call_id}/{secret}/{kind}")
async def vobiz_callback(call_id: str, secret: str, kind: str, request: Request) -> Response:
    refused, applied, event = await _handle(request, "vobiz", call_id, secret, kind)
    if refused is not None or event is None:
        return refused or FORBIDDEN
    if applied is None:  # progress only
        return Response(status_code=204)
    await _after(request, applied)
    if kind == "machine" and event.verdict is Verdict.MACHINE:
        await _hang_up(request, applied.call)
    if kind == "answer":
        xml = answer_vobiz_xml(request, applied.call, secret)
        return Response(xml, media_type="application/xml")
    return Response(status_code=204)


async def _hang_up(request: Request, call: store.CallRow) -> None:
    """A machine answered a Vobiz call: end it (the voicemail drop comes with the voice runtime)."""
    if not call.provider_call_sid:
        return
    async with request.app.state.sessionmaker() as session:
        phone_number_id = await session.scalar(
            select(Call.phone_number_id).where(Call.id == call.id)
        )
        number = await session.get(PhoneNumber, phone_number_id) if phone_number_id else None
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


def answer_twiml(request: Request, call: store.CallRow, secret: str) -> str:
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


def answer_vobiz_xml(request: Request, call: store.CallRow, secret: str) -> str:
    url = f"{_media_url(request, 'vobiz')}/{call.id}/{secret}"
    return (
        '<?xml version="1.0" encoding="UTF-8"?><Response>'
        '<Stream bidirectional="true" keepCallAlive="true" '
        f'contentType="audio/x-mulaw;rate=8000">{url}</Stream></Response>'
    )
