"""The media-stream WebSockets the answer documents point at.

Twilio: `/telephony/twilio/media`, the call id and secret in the `start` message's
`customParameters` (Twilio drops query strings). Vobiz: `/telephony/vobiz/media/{call_id}/
{secret}`. A stream reaches the assistant only when

1. the secret is the call's (a wrong one is refused and changes nothing),
2. the call is `in_progress` and its answering-machine verdict is `human` or `unknown`
   (Vobiz's verdict may arrive after the stream opens: the assistant stays silent until it
   does, or until the detection window has passed, which counts as `unknown`), and
3. no other stream has claimed the call (a reused secret is refused).

Refusals close the socket with 1008 (policy violation) and write nothing. One waits first:
a Vobiz stream refused for a machine that gets a voicemail is left open until the carrier
closes it, because closing it would end the answer document, and with it the call, before
the voicemail transfer (which replaces the stream) reaches Vobiz.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import hmac
import importlib.util
import json
import logging
from typing import Any

from fastapi import APIRouter, Request, Response, WebSocket, WebSocketDisconnect
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from outdial.config import Settings
from outdial.database import write_transaction
from outdial.ids import is_well_formed
from outdial.telephony import voicemail
from outdial.telephony.base import CallState, Verdict
from outdial.voice import repository
from outdial.voice import service as voice_service

router = APIRouter(prefix="/telephony", include_in_schema=False)
log = logging.getLogger("outdial.voice")

POLICY_VIOLATION = 1008
START_TIMEOUT_SECONDS = 10.0
VERDICT_POLL_SECONDS = 0.1
VOBIZ_AMD_SECONDS = (2.0, 10.0)  # Vobiz clamps machine_detection_time to 2..10 s
VERDICT_GRACE_SECONDS = 1.0
VOICEMAIL_HOLD_SECONDS = 10.0  # the voicemail transfer closes the stream well before this


async def _start_message(websocket: WebSocket) -> dict[str, Any] | None:
    """Read messages until the stream's `start` (Twilio sends `connected` first)."""
    try:
        async with asyncio.timeout(START_TIMEOUT_SECONDS):
            while True:
                message = json.loads(await websocket.receive_text())
                if isinstance(message, dict) and message.get("event") == "start":
                    return message
    except (TimeoutError, WebSocketDisconnect, ValueError, KeyError):
        return None


def _secret_matches(secret: str, secret_hash: str | None) -> bool:
    digest = hashlib.sha256(secret.encode()).hexdigest()
    return secret_hash is not None and hmac.compare_digest(digest, secret_hash)


async def _authentic(
    sessionmaker: async_sessionmaker[AsyncSession], provider: str, call_id: str, secret: str
) -> bool:
    if not is_well_formed(call_id) or not secret:
        return False
    async with sessionmaker() as session:
        call = await repository.gate(session, call_id)
    return (
        call is not None and call.provider == provider and _secret_matches(secret, call.secret_hash)
    )


def _verdict_deadline(provider: str, config: dict[str, Any]) -> float:
    """Seconds to wait for a verdict not yet known: none for Twilio (it comes with the answer)."""
    if provider != "vobiz":
        return 0.0
    low, high = VOBIZ_AMD_SECONDS
    window = min(max(float(config["machine_detection_timeout_seconds"]), low), high)
    return window + VERDICT_GRACE_SECONDS


async def _human_on_the_line(
    sessionmaker: async_sessionmaker[AsyncSession], call_id: str, wait: float
) -> bool:
    """True once the call is live with a human/unknown verdict; False for a machine or an end."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        async with sessionmaker() as session:
            call = await repository.gate(session, call_id)
        if call is None or call.status != CallState.IN_PROGRESS:
            return False
        if call.answered_by == Verdict.MACHINE:
            return False
        if call.answered_by is not None or loop.time() >= deadline:
            return True
        await asyncio.sleep(VERDICT_POLL_SECONDS)


async def admit(
    websocket: WebSocket, provider: str, call_id: str, secret: str, stream_id: str
) -> dict[str, Any] | None:
    """The call's resolved configuration when this stream may talk to it; None: refuse."""
    state = websocket.app.state
    sessionmaker = state.sessionmaker
    if not await _authentic(sessionmaker, provider, call_id, secret):
        return None
    if not voice_installed():
        log.error("call %s cannot talk: the voice extra (pipecat) is not installed", call_id)
        return None
    async with sessionmaker() as session:
        config = await voice_service.resolve_call(session, call_id)
    if config is None:
        return None
    if not await _human_on_the_line(sessionmaker, call_id, _verdict_deadline(provider, config)):
        return None
    async with write_transaction(sessionmaker) as session:
        if not await repository.claim_media(session, call_id, stream_id):
            log.warning("a second media stream for %s was refused", call_id)
            return None
        await repository.store_config(session, call_id, config)
    return config


async def _refuse(websocket: WebSocket) -> None:
    with contextlib.suppress(RuntimeError):  # already closed by the other side
        await websocket.close(code=POLICY_VIOLATION)


@router.websocket("/twilio/media")
async def twilio_media(websocket: WebSocket) -> None:
    await websocket.accept()
    start = await _start_message(websocket)
    if start is None:
        await _refuse(websocket)
        return
    details = start.get("start") or {}
    parameters = details.get("customParameters") or {}
    call_id, secret = str(parameters.get("call_id", "")), str(parameters.get("secret", ""))
    stream_sid = str(start.get("streamSid") or details.get("streamSid") or "")
    config = await admit(websocket, "twilio", call_id, secret, stream_sid)
    if config is None:
        await _refuse(websocket)
        return
    from outdial.voice.serializers import twilio_serializer

    serializer = twilio_serializer(stream_sid, str(details.get("callSid") or ""))
    await converse(websocket, call_id, secret, config, serializer)


@router.websocket("/vobiz/media/{call_id}/{secret}")
async def vobiz_media(websocket: WebSocket, call_id: str, secret: str) -> None:
    if not await _authentic(websocket.app.state.sessionmaker, "vobiz", call_id, secret):
        await websocket.close(code=POLICY_VIOLATION)  # before accept: an HTTP 403
        return
    await websocket.accept()
    start = await _start_message(websocket)
    if start is None:
        await _refuse(websocket)
        return
    stream_id = str((start.get("start") or {}).get("streamId") or "")
    config = await admit(websocket, "vobiz", call_id, secret, stream_id)
    if config is None:
        coming = await _voicemail_coming(websocket.app.state.sessionmaker, call_id)
        if not (coming and await _carrier_closed(websocket, VOICEMAIL_HOLD_SECONDS)):
            await _refuse(websocket)
        return
    from outdial.voice.serializers import vobiz_serializer

    await converse(websocket, call_id, secret, config, vobiz_serializer(stream_id, call_id))


@router.post("/transfer/{call_id}/{token}")
async def vobiz_transfer_document(call_id: str, token: str, request: Request) -> Response:
    """The document a transferred Vobiz call follows (`voice/transfer.py`); 403 without the
    transfer's token."""
    from outdial.voice import transfer

    base = request.app.state.settings.resolved_public_base_url
    xml = None
    if is_well_formed(call_id):
        xml = await transfer.document(request.app.state.sessionmaker, base, call_id, token)
    return Response(xml, media_type="application/xml") if xml else Response(status_code=403)


@router.post("/transfer/{call_id}/{token}/whisper")
async def transfer_whisper(call_id: str, token: str, request: Request) -> Response:
    """A warm transfer's briefing, played to the colleague before the person is connected
    (Twilio `<Number url>`, Vobiz `confirmSound`); 403 without the transfer's token."""
    from outdial.voice import transfer

    xml = None
    if is_well_formed(call_id):
        xml = await transfer.whisper(request.app.state.sessionmaker, call_id, token)
    return Response(xml, media_type="application/xml") if xml else Response(status_code=403)


async def _voicemail_coming(sessionmaker: async_sessionmaker[AsyncSession], call_id: str) -> bool:
    """A machine is on the live call and its campaign leaves it a message."""
    async with sessionmaker() as session:
        call = await repository.gate(session, call_id)
        if call is None or call.answered_by != Verdict.MACHINE:
            return False
        if call.status != CallState.IN_PROGRESS:
            return False
        source = await voicemail.load(session, call_id)
    return source is not None and voicemail.message(source) is not None


async def _carrier_closed(websocket: WebSocket, seconds: float) -> bool:
    """Read and drop what the carrier sends until it closes the socket: False after `seconds`."""
    try:
        async with asyncio.timeout(seconds):
            while (await websocket.receive())["type"] != "websocket.disconnect":
                pass
    except TimeoutError:
        return False
    return True


def voice_installed() -> bool:
    """Whether the `voice` extra (Pipecat) is installed; without it no stream is served."""
    return importlib.util.find_spec("pipecat") is not None


async def converse(
    websocket: WebSocket, call_id: str, secret: str, config: dict[str, Any], serializer: Any
) -> None:
    """Run the conversation, then store what it produced."""
    from outdial.voice import notice, pipeline, recorder, transfer
    from outdial.voice.actions import ENDED_BY_ASSISTANT, TRANSFERRED
    from outdial.voice.providers import VoiceConfigError, services_for

    settings: Settings = websocket.app.state.settings
    sessionmaker = websocket.app.state.sessionmaker
    try:
        services = services_for(settings, config)
    except VoiceConfigError as exc:
        log.error("call %s cannot talk: %s", call_id, exc)
        await voice_service.record_failure(sessionmaker, call_id, str(exc))
        await _refuse(websocket)
        return
    opt_out = functools.partial(voice_service.opt_out, sessionmaker, call_id)
    number = transfer.transfer_number(config)
    transfers = target = None
    if number is not None:
        base = settings.resolved_public_base_url
        carriers = websocket.app.state.carriers
        target = transfer.Transfer(number, transfer.transfer_mode(config))
        transfers = functools.partial(
            transfer.transfer, sessionmaker, carriers, base, call_id, target
        )
    recording = None
    if recorder.wanted(config):
        async with sessionmaker() as session:
            owner = await repository.owner_of(session, call_id)
        if owner is not None:
            recording = recorder.for_call(settings.data_dir, owner, call_id, config)
    conversing = pipeline.build(
        websocket, serializer, config, services, opt_out, transfers, recording
    )
    client = websocket.app.state.http_client
    conversing.ending.notice = notice.for_call(client, config, call_id, target)
    with transfer.talking(call_id, conversing.conversation):
        conversation = await pipeline.run(conversing)
    if conversation.ended_reason == "customer_hung_up" and await transfer.transferred(
        sessionmaker, call_id
    ):
        conversation.ended_reason = TRANSFERRED  # through the API: the transfer ended the stream
    await voice_service.talk_ended(sessionmaker, call_id, conversation.ended_reason or "completed")
    if conversation.ended_reason in ENDED_BY_ASSISTANT:
        # The goodbye has played and the stream is closed; a Vobiz call kept alive is not.
        await voice_service.hang_up(sessionmaker, websocket.app.state.carriers, call_id)
    await conversing.ending.notices_sent()
    recordings = await recording.finish() if recording is not None else {}
    summary = await voice_service.summarise(services.llm, conversation.transcript, config)
    await voice_service.record(sessionmaker, call_id, conversation, summary, recordings)
