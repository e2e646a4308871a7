"""Provider callbacks: verified, recorded once, applied so that a call only moves forward.

Each callback URL carries our call id and a per-call secret, so a callback finds its call
even when the provider's id was never stored. A missing or wrong signature (or secret) is
a 403 that changes nothing. The event is stored under a unique (call, key); a duplicate
finds the key taken and does nothing. Out-of-order callbacks cannot move a call backwards.

A machine verdict gets the voicemail drop (`telephony/voicemail.py`): Twilio's answer TwiML
says the message; a Vobiz call is transferred to the `voicemail` callback, a kind of its own
that is verified like the others and changes nothing of the call.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl

from fastapi import APIRouter, FastAPI, Request, Response
from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from outdial.database import read_alone, write_transaction
from outdial.dialer import store
from outdial.dialer.control import hang_up_one
from outdial.dialer.sender import callback_base, pause_for_account
from outdial.dialer.store import calls
from outdial.ids import is_well_formed
from outdial.models import Call, PhoneNumber, utcnow
from outdial.secrets_store import CallSecrets
from outdial.telephony import twilio, vobiz, voicemail
from outdial.telephony.base import FINAL_STATES, CallState, Verdict
from outdial.telephony.base import CallEvent as Event
from outdial.telephony.registry import Carriers, UnreadableCredentials

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
    "voicemail": vobiz.parse_voicemail,
}
# Callbacks whose answer (a document) or follow-up (the voicemail drop) needs the call.
ANSWERED_WITH_THE_CALL = frozenset({"answer", "machine", "voicemail"})
FORBIDDEN = Response("forbidden", status_code=403)
Signed = Callable[[str], bool]  # does the request's signature check out with this token?


@dataclass(frozen=True)
class CallPass:
    """What checking a callback needs to know of its call; fixed once the call exists."""

    provider: str
    secret_hash: str | None
    phone_number_id: str | None


_CALL_PASS = select(calls.c.provider, calls.c.secret_hash, calls.c.phone_number_id).where(
    calls.c.id == bindparam("call_id")
)


class Verifier:
    """Checks callbacks against the call's secret and the provider's signature.

    A call's secret is an HMAC of the call (`secrets_store.CallSecrets`) naming its caller
    number: checking it reads nothing, in every API process. A call made before secrets were
    derived has a random one, checked against the hash on its row; that row's secret hash and
    provider never change, so they are kept (a bounded LRU) after the first callback reads
    them, and callbacks of one call that arrive together share the one read in flight.
    Each number's auth token is kept too; a signature that fails with a kept token is
    checked once more against the token in the database (the user may have rotated it).
    """

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], size: int = 100_000):
        self.sessionmaker = sessionmaker
        self.size = size
        self._calls: OrderedDict[str, CallPass] = OrderedDict()
        self._reading: dict[str, asyncio.Future[CallPass | None]] = {}
        self._tokens: dict[str, str] = {}

    async def verify(
        self, carriers: Carriers, call_id: str, provider: str, secret: str, signed: Signed
    ) -> bool:
        if not is_well_formed(call_id):
            return False
        if CallSecrets.is_derived(secret):
            phone_number_id = carriers.call_secrets.phone_number_of(call_id, provider, secret)
        else:
            phone_number_id = await self._stored_secret(call_id, provider, secret)
        if phone_number_id is None:
            return False
        token = self._tokens.get(phone_number_id)
        if token is not None and signed(token):
            return True
        fresh = await self._token(carriers, phone_number_id)
        return fresh is not None and fresh != token and signed(fresh)

    async def _stored_secret(self, call_id: str, provider: str, secret: str) -> str | None:
        """The caller number of a call made before secrets were derived, if `secret` is its."""
        known = await self._call(call_id)
        if known is None or known.provider != provider or known.phone_number_id is None:
            return None
        digest = hashlib.sha256(secret.encode()).hexdigest()
        if known.secret_hash is None or not hmac.compare_digest(digest, known.secret_hash):
            return None
        return known.phone_number_id

    async def _call(self, call_id: str) -> CallPass | None:
        known = self._calls.get(call_id)
        if known is not None:
            self._calls.move_to_end(call_id)
            return known
        reading = self._reading.get(call_id)
        if reading is None:
            reading = self._reading[call_id] = asyncio.ensure_future(self._read_call(call_id))
            reading.add_done_callback(lambda _: self._reading.pop(call_id, None))
        return await asyncio.shield(reading)  # one caller's cancellation leaves the others'

    async def _read_call(self, call_id: str) -> CallPass | None:
        rows = await read_alone(self.sessionmaker, _CALL_PASS, {"call_id": call_id})
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
        try:
            token = self._tokens[phone_number_id] = carriers.auth_token(number)
        except UnreadableCredentials as exc:  # no token to check with: refused, logged
            log.error("callbacks for %s cannot be checked: %s", phone_number_id, exc)
            return None
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
    """Verify, then record and apply the event: progress, or an event that tells nothing new,
    alone in one statement, and so is the answer on PostgreSQL (`store.record_answer`);
    anything else with the call row locked. `applied` is None for the first two. Progress
    that was not recorded (a duplicate, or another provider call's) goes the locked way."""
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
    sessionmaker = request.app.state.sessionmaker
    if store.is_progress(event) and await store.record_progress(sessionmaker, call_id, event, form):
        return None, None, event
    if kind not in ANSWERED_WITH_THE_CALL and await store.record_repeat(
        sessionmaker, call_id, event, form
    ):
        return None, None, event
    answered = await store.record_answer(sessionmaker, call_id, event, form)
    if answered is not None:
        return None, answered, event
    applied = await store.apply_alone(sessionmaker, call_id, event, form)
    if applied is None:
        return FORBIDDEN, None, None
    return None, applied, event


async def _after(request: Request, applied: store.Applied, event: Event) -> None:
    """Outside the event's transaction: pause the campaign if the provider ended the call
    for a problem of the account (every dial would end alike; a duplicate too, in case the
    first delivery's pause was lost); then, for an end, wake the embedded dialer (the freed
    slot's refill waits for nothing else) and complete a finished campaign (unless
    recipients were still waiting to be dialed as the end was written)."""
    campaign_id = applied.call.campaign_id
    if event.account_problem and campaign_id:
        async with write_transaction(request.app.state.sessionmaker) as session:
            dialed_at = applied.call.dial_started_at or applied.call.started_at
            await pause_for_account(session, campaign_id, event.account_problem, dialed_at)
    if not applied.ended or not campaign_id:
        return
    dialer = getattr(request.app.state, "dialer", None)
    if dialer is not None:
        dialer.wakeup.campaign(campaign_id)
    if applied.waiting_to_dial:  # this end cannot have completed it (`store.Ended`)
        return
    sessionmaker = request.app.state.sessionmaker
    if await store.nothing_left(sessionmaker, campaign_id):
        async with write_transaction(sessionmaker) as session:
            await store.complete_if_done(session, campaign_id, utcnow())


def _path(request: Request) -> tuple[str, str, str]:
    params = request.path_params
    return params["call_id"], params["secret"], params["kind"]


class Callbacks:
    """ASGI middleware, the innermost of the API's: a provider's callback goes straight to
    its endpoint.

    The router would find the same route (matched here by the route's own pattern) and call
    the same endpoint, after FastAPI's matching, validating and wrapping: more than four
    fifths of the cost of a callback refused at once, five callbacks to every call
    (docs/benchmarks.md). What the outer middleware does (metrics under the route's
    template, the upload limit, a 500 for a failure) is unchanged, and so are the app's
    exception handlers (a lost database is a 503 to retry)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._endpoint: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path = scope["path"].removeprefix(scope.get("root_path", ""))
            for route in ROUTES if path.startswith(router.prefix) else ():
                match = route.path_regex.match(path)
                if match is not None:
                    scope["path_params"] = match.groupdict()
                    scope["route"] = route  # (what the metrics label the request with)
                    await self._handling(scope["app"])(scope, receive, send)
                    return
        await self.app(scope, receive, send)

    def _handling(self, api: FastAPI) -> ASGIApp:
        """The endpoint inside the app's exception handlers, as the router would run it."""
        if self._endpoint is None:
            handlers = {
                k: v for k, v in api.exception_handlers.items() if k not in (500, Exception)
            }
            self._endpoint = ExceptionMiddleware(_serve, handlers=handlers, debug=api.debug)
        return self._endpoint


async def _serve(scope: Scope, receive: Receive, send: Send) -> None:
    response = await scope["route"].endpoint(Request(scope, receive, send))
    await response(scope, receive, send)


@router.post("/twilio/{call_id}/{secret}/{kind}")
async def twilio_callback(request: Request) -> Response:
    call_id, secret, kind = _path(request)
    refused, applied, event = await _handle(request, "twilio", call_id, secret, kind)
    if refused is not None or event is None:
        return refused or FORBIDDEN
    if applied is None:  # progress only
        return Response(status_code=204)
    if applied.stray:
        await _end_stray(request, call_id, event)
        if kind == "answer":
            return Response(voicemail.twiml(None), media_type="application/xml")
        return Response(status_code=204)
    await _after(request, applied, event)
    if kind == "answer":
        if applied.call.answered_by == Verdict.MACHINE:
            twiml = await machine_twiml(request, applied.call)
        else:
            twiml = answer_twiml(request, applied.call, secret)
        return Response(twiml, media_type="application/xml")
    return Response(status_code=204)


@router.post("/vobiz/{call_id}/{secret}/{kind}")
async def vobiz_callback(request: Request) -> Response:
    call_id, secret, kind = _path(request)
    refused, applied, event = await _handle(request, "vobiz", call_id, secret, kind)
    if refused is not None or event is None:
        return refused or FORBIDDEN
    if applied is None:  # progress only
        return Response(status_code=204)
    if applied.stray:
        await _end_stray(request, call_id, event)
        if kind in ("answer", "voicemail"):
            return Response(voicemail.vobiz_xml(None), media_type="application/xml")
        return Response(status_code=204)
    await _after(request, applied, event)
    if kind == "machine" and event.verdict is Verdict.MACHINE and applied.fresh:
        await _after_machine(request, applied.call, secret)
    if kind == "answer":
        xml = answer_vobiz_xml(request, applied.call, secret)
        return Response(xml, media_type="application/xml")
    if kind == "voicemail":
        xml = await voicemail_vobiz_xml(request, applied.call)
        return Response(xml, media_type="application/xml")
    return Response(status_code=204)


async def _end_stray(request: Request, call_id: str, event: Event) -> None:
    """Hang up a second provider call placed for one dial (`store.is_stray`), unless its
    event says it is over: the person is not called twice. Its answer request gets a hang-up
    document besides, so it never reaches the assistant."""
    log.warning(
        "call %s: event %s of a second provider call %s; hanging it up",
        call_id,
        event.dedupe_key,
        event.provider_call_id,
    )
    if event.state in FINAL_STATES or not event.provider_call_id:
        return
    async with request.app.state.sessionmaker() as session:
        call = await session.get(Call, call_id)
        number = await session.get(PhoneNumber, call.phone_number_id) if call else None
    if number is not None:
        await hang_up_one(request.app.state.carriers, number, event.provider_call_id)


async def _after_machine(request: Request, call: store.CallRow, secret: str) -> None:
    """A machine answered a Vobiz call: transfer it to its voicemail document, or hang up.

    Only the first delivery of the verdict acts (a duplicate would restart the message).
    """
    if not call.provider_call_sid:
        return
    async with request.app.state.sessionmaker() as session:
        source = await voicemail.load(session, call.id)
        number_id = source.phone_number_id if source is not None else None
        number = await session.get(PhoneNumber, number_id) if number_id else None
    if source is None or number is None:
        return
    try:
        provider = request.app.state.carriers.for_number(number)
    except UnreadableCredentials as exc:  # the hangup callback, or the reaper, ends the call
        log.warning("machine on %s left on the line: %s", call.id, exc)
        return
    if isinstance(provider, vobiz.VobizProvider) and voicemail.message(source) is not None:
        base = request.app.state.settings.resolved_public_base_url
        url = f"{callback_base(base, 'vobiz', call.id, secret)}/voicemail"
        try:
            await provider.transfer(call.provider_call_sid, url)
            return
        except Exception as exc:  # leave no machine on the line: hang up instead
            log.warning("voicemail transfer of %s failed, hanging up: %s", call.id, exc)
    try:
        await provider.hangup(call.provider_call_sid)
    except Exception as exc:  # the hangup callback, or the reaper, still ends the call
        log.warning("hang-up of %s failed: %s", call.id, exc)


async def machine_twiml(request: Request, call: store.CallRow) -> str:
    """Twilio's answer for a machine: the voicemail after the greeting, or just a hang-up."""
    message = None
    if twilio.after_the_beep((await _form(request)).get("AnsweredBy")):
        message = await _voicemail_of(request, call.id)
    return voicemail.twiml(message)


async def voicemail_vobiz_xml(request: Request, call: store.CallRow) -> str:
    """The document a transferred Vobiz machine call plays; a hang-up for anything else."""
    message = None
    if call.answered_by == Verdict.MACHINE and call.status == CallState.IN_PROGRESS:
        message = await _voicemail_of(request, call.id)
    return voicemail.vobiz_xml(message)


async def _voicemail_of(request: Request, call_id: str) -> voicemail.Voicemail | None:
    async with request.app.state.sessionmaker() as session:
        source = await voicemail.load(session, call_id)
    return voicemail.message(source) if source is not None else None


def _media_url(request: Request, provider: str) -> str:
    base = request.app.state.settings.resolved_public_base_url
    return (
        base.replace("https://", "wss://").replace("http://", "ws://")
        + f"/telephony/{provider}/media"
    )


def answer_twiml(request: Request, call: store.CallRow, secret: str) -> str:
    """People get the media stream (the call's id and secret as parameters: Twilio drops
    query strings)."""
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


ROUTES = [route for route in router.routes if isinstance(route, Route)]  # for `Callbacks`
