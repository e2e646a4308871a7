"""Cold transfer: the person's call leaves the assistant for `call_actions.transfer_number`.

- Twilio: the live call is updated with TwiML `<Dial callerId="…">number</Dial>`; the
  `<Connect><Stream>` it was following ends, and the person is connected to the number.
- Vobiz: the call's A-leg is transferred to our document at
  `/telephony/transfer/{call_id}/{secret}` (fetched with a POST, the call's secret in the path
  as for its media stream), which answers `<Dial callerId="…"><Number>number</Number></Dial>`.

The caller id is the number the call came from. Warm transfer (the assistant briefing the
other party first) is not offered: `transfer_mode` `warm` transfers cold.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from xml.sax.saxutils import quoteattr

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from outdial.telephony import twilio, vobiz
from outdial.telephony.base import CallState, DialError
from outdial.telephony.registry import Carriers
from outdial.voice import repository

log = logging.getLogger("outdial.voice")

XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>'
_E164 = re.compile(r"\+[1-9]\d{6,14}")


def transfer_number(config: dict[str, Any]) -> str | None:
    """The number a call may be transferred to (None: the transfer tool is not offered)."""
    actions = config["call_actions"]
    number = (actions.get("transfer_number") or "").replace(" ", "").replace("-", "")
    if not (actions["enabled"] and actions["allow_transfer"] and number):
        return None
    if not _E164.fullmatch(number):
        log.warning("transfer_number %r is not an E.164 number: no transfer offered", number)
        return None
    return number


def _caller_id(from_number: str | None) -> str:
    return f" callerId={quoteattr(from_number)}" if from_number else ""


def twilio_twiml(number: str, from_number: str | None) -> str:
    return f"{XML_DECLARATION}<Response><Dial{_caller_id(from_number)}>{number}</Dial></Response>"


def vobiz_xml(number: str | None, from_number: str | None) -> str:
    """The Vobiz transfer document; a hang-up when there is nothing to transfer to."""
    if number is None:
        return f"{XML_DECLARATION}<Response><Hangup/></Response>"
    dial = f"<Dial{_caller_id(from_number)}><Number>{number}</Number></Dial>"
    return f"{XML_DECLARATION}<Response>{dial}</Response>"


def vobiz_document_url(public_base_url: str, call_id: str, secret: str) -> str:
    return f"{public_base_url.rstrip('/')}/telephony/transfer/{call_id}/{secret}"


async def transfer(
    sessionmaker: async_sessionmaker[AsyncSession],
    carriers: Carriers,
    public_base_url: str,
    call_id: str,
    secret: str,
    number: str,
) -> bool:
    """Ask the call's provider to connect the person to `number`; False when it did not."""
    async with sessionmaker() as session:
        line = await repository.provider_line(session, call_id)
    if line is None or line.status != CallState.IN_PROGRESS:
        return False
    provider = carriers.for_number(line.number)
    try:
        if isinstance(provider, twilio.TwilioProvider):
            await provider.redirect(line.provider_call_id, twilio_twiml(number, line.from_number))
        elif isinstance(provider, vobiz.VobizProvider):
            url = vobiz_document_url(public_base_url, call_id, secret)
            await provider.transfer(line.provider_call_id, url)
        else:
            return False
    except DialError as exc:
        log.warning("transfer of %s failed: %s", call_id, exc)
        return False
    return True


async def vobiz_document(sessionmaker: async_sessionmaker[AsyncSession], call_id: str) -> str:
    """What a transferred Vobiz call follows: a `<Dial>` to the call's transfer number while
    the call is live, else a hang-up."""
    async with sessionmaker() as session:
        line = await repository.provider_line(session, call_id)
    number = None
    if line is not None and line.status == CallState.IN_PROGRESS and line.config:
        number = transfer_number(line.config)
    return vobiz_xml(number, line.from_number if line is not None else None)
