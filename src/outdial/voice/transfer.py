"""Transfers: the person's call leaves the assistant for a colleague's number.

Asked for by the assistant's `transfer` tool (to `call_actions.transfer_number`) or by
`PATCH /calls/{id}` (`action: transfer`). Each call is transferred once: the transfer is a
`call_events` row under the key `transfer`, with the number, the mode, the briefing and the
hash of a token of its own. The token (not the call's media secret, which only the voice
runtime holds) is in the path of the documents the provider fetches:

- `/telephony/transfer/{call_id}/{token}`: Vobiz's transfer document, `<Dial>` to the number
  while the call is live, else `<Hangup/>`;
- `/telephony/transfer/{call_id}/{token}/whisper`: a warm transfer's briefing, played to the
  colleague who answers before the person is connected.

- Twilio: the live call is updated with TwiML `<Dial callerId="…"><Number>…</Number></Dial>`
  (warm: `<Number url="…/whisper">`, whose `<Say>` Twilio plays to the called party first).
- Vobiz: the A-leg is transferred to the transfer document (warm: `<Dial confirmSound="…/
  whisper" confirmKey="1">`; the colleague hears the briefing and presses 1 to take the call).

The caller id is the number the call came from.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol
from xml.sax.saxutils import escape, quoteattr

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from outdial.database import write_transaction
from outdial.errors import Conflict, OutdialError
from outdial.telephony import twilio, vobiz
from outdial.telephony.base import CallState, DialError, DialErrorKind, Verdict
from outdial.telephony.registry import Carriers
from outdial.voice import repository

log = logging.getLogger("outdial.voice")

XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>'
COLD, WARM = "cold", "warm"
CONFIRM_KEY = "1"  # Vobiz: the digit the colleague presses to take a warm transfer
BRIEFING_TURNS = 4  # the last turns of the conversation read to the colleague
_E164 = re.compile(r"\+[1-9]\d{6,14}")


class TransferFailed(OutdialError):
    """The provider did not take the transfer."""

    status_code = 502


@dataclass(frozen=True)
class Transfer:
    """Where a call goes, and how."""

    to: str
    mode: str = COLD


class Talking(Protocol):
    """A conversation in progress, as far as briefing a colleague goes."""

    transcript: list[dict[str, Any]]


# The conversations this process is holding, by call id: a warm transfer's briefing reads
# the turns so far from here (the transcript is stored only when the call ends).
_talking: dict[str, Talking] = {}


@contextlib.contextmanager
def talking(call_id: str, conversation: Talking) -> Iterator[None]:
    _talking[call_id] = conversation
    try:
        yield
    finally:
        _talking.pop(call_id, None)


def turns_so_far(call_id: str) -> list[dict[str, Any]]:
    """The transcript of a conversation this process holds (empty for any other call)."""
    conversation = _talking.get(call_id)
    return list(conversation.transcript) if conversation is not None else []


def e164(number: str | None) -> str | None:
    """The number without spaces and dashes, when it is E.164; else None."""
    number = (number or "").replace(" ", "").replace("-", "")
    return number if _E164.fullmatch(number) else None


def transfer_number(config: dict[str, Any]) -> str | None:
    """The number the assistant may transfer to (None: the transfer tool is not offered)."""
    actions = config["call_actions"]
    if not (actions["enabled"] and actions["allow_transfer"] and actions.get("transfer_number")):
        return None
    number = e164(actions["transfer_number"])
    if number is None:
        log.warning(
            "transfer_number %r is not an E.164 number: no transfer offered",
            actions["transfer_number"],
        )
    return number


def transfer_mode(config: dict[str, Any]) -> str:
    return WARM if config["call_actions"].get("transfer_mode") == WARM else COLD


def _caller_id(from_number: str | None) -> str:
    return f" callerId={quoteattr(from_number)}" if from_number else ""


def twilio_twiml(number: str, from_number: str | None, whisper_url: str | None = None) -> str:
    if whisper_url is None:
        dial = f"<Dial{_caller_id(from_number)}>{number}</Dial>"
    else:
        target = f'<Number url={quoteattr(whisper_url)} method="POST">{number}</Number>'
        dial = f"<Dial{_caller_id(from_number)}>{target}</Dial>"
    return f"{XML_DECLARATION}<Response>{dial}</Response>"


def vobiz_xml(number: str | None, from_number: str | None, whisper_url: str | None = None) -> str:
    """The Vobiz transfer document; a hang-up when there is nothing to transfer to."""
    if number is None:
        return f"{XML_DECLARATION}<Response><Hangup/></Response>"
    confirm = ""
    if whisper_url is not None:
        confirm = f" confirmSound={quoteattr(whisper_url)} confirmKey={quoteattr(CONFIRM_KEY)}"
    dial = f"<Dial{_caller_id(from_number)}{confirm}><Number>{number}</Number></Dial>"
    return f"{XML_DECLARATION}<Response>{dial}</Response>"


def whisper_document(provider: str, briefing: str) -> str:
    """What the colleague hears before being connected (Twilio `<Say>`, Vobiz `<Speak>`)."""
    if provider == "vobiz":
        text = f"{briefing} Press {CONFIRM_KEY} to take the call."
        return f"{XML_DECLARATION}<Response><Speak>{escape(text)}</Speak></Response>"
    return f"{XML_DECLARATION}<Response><Say>{escape(briefing)}</Say></Response>"


def briefing(to_number: str, name: str | None, transcript: list[dict[str, Any]]) -> str:
    """Who is on the line and what was said lately, in a few sentences.

    The last turns are read as they were said rather than summarised by the call's LLM: the
    person is on hold while the colleague's phone rings, and a summary would add seconds."""
    who = f"{name} at {to_number}" if name else to_number
    turns = [turn for turn in transcript if (turn.get("text") or "").strip()][-BRIEFING_TURNS:]
    if not turns:
        return f"Transferred call from {who}. Nothing was said yet."
    said = " ".join(
        ("They said: " if turn["role"] == "user" else "The assistant said: ")
        + turn["text"].strip().rstrip(".!?")
        + "."
        for turn in turns
    )
    return f"Transferred call from {who}. {said}"


def document_url(public_base_url: str, call_id: str, token: str) -> str:
    return f"{public_base_url.rstrip('/')}/telephony/transfer/{call_id}/{token}"


def whisper_url(public_base_url: str, call_id: str, token: str) -> str:
    return document_url(public_base_url, call_id, token) + "/whisper"


async def _briefing(session: AsyncSession, call_id: str) -> str:
    person = await repository.person_of(session, call_id)
    to_number, metadata = person if person is not None else ("an unknown number", {})
    name = metadata.get("name") if isinstance(metadata.get("name"), str) else None
    return briefing(to_number, name, turns_so_far(call_id))


async def request(
    sessionmaker: async_sessionmaker[AsyncSession],
    carriers: Carriers,
    public_base_url: str,
    call_id: str,
    target: Transfer,
) -> None:
    """Have the provider connect the person on the live call to `target.to`.

    409 when the call is not live with a person or is already being transferred; 502 when
    the provider refuses (the call then stays with the assistant)."""
    token = secrets.token_urlsafe(24)
    async with write_transaction(sessionmaker) as session:
        gate = await repository.gate(session, call_id)
        line = await repository.provider_line(session, call_id)
        if gate is None or line is None or line.status != CallState.IN_PROGRESS:
            raise Conflict("Only a live call can be transferred")
        if gate.answered_by == Verdict.MACHINE:
            raise Conflict("Only a call answered by a person can be transferred")
        payload = {"to": target.to, "mode": target.mode, "token_hash": _hash(token)}
        if target.mode == WARM:
            payload["briefing"] = await _briefing(session, call_id)
        if not await repository.claim_transfer(session, call_id, payload):
            raise Conflict("The call is already being transferred")
    try:
        await _hand_over(carriers, line, public_base_url, call_id, token, target)
    except DialError as exc:  # (unreadable credentials too)
        async with write_transaction(sessionmaker) as session:
            await repository.drop_transfer(session, call_id)
        log.warning("transfer of %s failed: %s", call_id, exc)
        raise TransferFailed("The provider did not take the transfer") from exc


async def _hand_over(
    carriers: Carriers,
    line: repository.ProviderLine,
    public_base_url: str,
    call_id: str,
    token: str,
    target: Transfer,
) -> None:
    provider = carriers.for_number(line.number)
    if isinstance(provider, twilio.TwilioProvider):
        whisper = whisper_url(public_base_url, call_id, token) if target.mode == WARM else None
        await provider.redirect(
            line.provider_call_id, twilio_twiml(target.to, line.from_number, whisper)
        )
    elif isinstance(provider, vobiz.VobizProvider):
        await provider.transfer(
            line.provider_call_id, document_url(public_base_url, call_id, token)
        )
    else:
        raise DialError(DialErrorKind.REJECTED, "this provider cannot transfer calls")


async def transfer(
    sessionmaker: async_sessionmaker[AsyncSession],
    carriers: Carriers,
    public_base_url: str,
    call_id: str,
    target: Transfer,
) -> bool:
    """The assistant's transfer: `request`, True when the provider took it."""
    try:
        await request(sessionmaker, carriers, public_base_url, call_id, target)
    except OutdialError as exc:
        log.warning("the assistant's transfer of %s did not happen: %s", call_id, exc.detail)
        return False
    return True


async def transferred(sessionmaker: async_sessionmaker[AsyncSession], call_id: str) -> bool:
    """Whether the call was handed to a transfer (the stream closing then is no hang-up)."""
    async with sessionmaker() as session:
        return await repository.transfer_of(session, call_id) is not None


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def _authentic(session: AsyncSession, call_id: str, token: str) -> dict[str, Any] | None:
    """The call's transfer when `token` is its token; else None."""
    payload = await repository.transfer_of(session, call_id)
    if payload is None or not hmac.compare_digest(_hash(token), str(payload.get("token_hash"))):
        return None
    return payload


async def document(
    sessionmaker: async_sessionmaker[AsyncSession], public_base_url: str, call_id: str, token: str
) -> str | None:
    """What a transferred Vobiz call follows: a `<Dial>` while the call is live, else a
    hang-up; None for a wrong token."""
    async with sessionmaker() as session:
        payload = await _authentic(session, call_id, token)
        if payload is None:
            return None
        line = await repository.provider_line(session, call_id)
    if line is None or line.status != CallState.IN_PROGRESS:
        return vobiz_xml(None, None)
    warm = payload.get("mode") == WARM
    whisper = whisper_url(public_base_url, call_id, token) if warm else None
    return vobiz_xml(str(payload["to"]), line.from_number, whisper)


async def whisper(
    sessionmaker: async_sessionmaker[AsyncSession], call_id: str, token: str
) -> str | None:
    """The briefing document of a warm transfer; None for a wrong token or a cold transfer."""
    async with sessionmaker() as session:
        payload = await _authentic(session, call_id, token)
        gate = await repository.gate(session, call_id) if payload is not None else None
    if payload is None or gate is None or payload.get("mode") != WARM:
        return None
    return whisper_document(gate.provider, str(payload.get("briefing") or ""))
