"""Emitting lifecycle events into the outbox, in the transaction of the change they report.

`emit` writes the event and one delivery per endpoint of the account that subscribes to its
type; the delivery worker sends them after the transaction commits, so an event exists if
and only if its change does. An account without a matching endpoint costs one indexed read
and writes nothing. The `emit_*` helpers build each event's data from the stored rows.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from outdial.campaign import repository as campaign_repository
from outdial.dialer.rules import attempt_outcome
from outdial.models import Call, Campaign, CampaignRecipient, utcnow
from outdial.schemas import format_timestamp
from outdial.telephony.base import FINAL_STATES
from outdial.webhook import repository
from outdial.webhook.schemas import EVENT_TYPES

CAMPAIGN_EVENTS = ("campaign.started", "campaign.paused", "campaign.resumed", "campaign.completed")
CALL_EVENTS = ("call.started", "call.ended")
# How long a talked call's `call.ended` waits for its conversation (summary included: the
# summary is given up to 30 s, voice/service.SUMMARY_TIMEOUT_SECONDS).
CONVERSATION_WAIT = timedelta(seconds=60)
FINAL_STATUSES = frozenset(state.value for state in FINAL_STATES)


def _when(value: datetime | None) -> str | None:
    return format_timestamp(value) if value is not None else None


async def emit(session: AsyncSession, user_id: str, type: str, data: dict[str, Any]) -> str | None:
    """Queue an event for the account's endpoints that want it; its id, or None if none do."""
    if type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type!r}")
    endpoints = await repository.subscribers(session, user_id, type)
    if not endpoints:
        return None
    return await repository.write_event(session, user_id, type, data, endpoints)


async def emit_campaign(session: AsyncSession, campaign: Campaign, type: str) -> str | None:
    """`campaign.started|paused|resumed|completed`: the campaign object as it is now, with its
    counters as the transaction sees them."""
    if type not in CAMPAIGN_EVENTS:
        raise ValueError(f"not a campaign event: {type!r}")
    endpoints = await repository.subscribers(session, campaign.user_id, type)
    if not endpoints:
        return None
    counts = (await campaign_repository.read_counts(session, [campaign.id]))[campaign.id]
    data = {
        "campaign_id": campaign.id,
        "name": campaign.name,
        "status": campaign.status,
        "ended_reason": campaign.ended_reason,
        "status_reason": campaign.status_reason,
        "started_at": _when(campaign.started_at),
        "completed_at": _when(campaign.completed_at),
        "counts": counts,
    }
    return await repository.write_event(session, campaign.user_id, type, data, endpoints)


async def emit_call(
    session: AsyncSession,
    call_id: str,
    type: str,
    *,
    conversation_pending: bool = False,
    user_id: str | None = None,
) -> str | None:
    """`call.started` (the provider took the call) or `call.ended` (it reached a final status).

    Reads the call as the caller's transaction sees it, so call it after the call's update.
    An account without a subscribed endpoint costs one query (none when `user_id`, the
    call's owner, is given and the transaction has read the account's endpoints already).
    `call.ended` carries the attempt's outcome, duration, summary and a link to the call
    (with its transcript) in the API. Its id is the call's (`call_ended_event_id`). With
    `conversation_pending` (the call talked to its assistant, whose conversation, summary
    and end reason are not stored yet) its deliveries wait up to `CONVERSATION_WAIT`: the
    voice runtime rewrites the event once it has stored them (`conversation_stored`), and
    makes it due at once. Should the runtime never get there, the event goes out at the end
    of the wait as it was written.
    """
    if type not in CALL_EVENTS:
        raise ValueError(f"not a call event: {type!r}")
    owner = user_id or select(Call.user_id).where(Call.id == call_id).scalar_subquery()
    endpoints = await repository.subscribers(session, owner, type)
    if not endpoints:
        return None
    call = await _current(session, select(Call).where(Call.id == call_id))
    if call is None:
        return None
    data = _call_data(call, type)
    if type != "call.ended":
        return await repository.write_event(session, call.user_id, type, data, endpoints)
    due = utcnow() + CONVERSATION_WAIT if conversation_pending else None
    event_id = call_ended_event_id(call.id)
    return await repository.write_event(
        session, call.user_id, type, data, endpoints, event_id=event_id, due=due
    )


async def conversation_stored(session: AsyncSession, call_id: str) -> None:
    """The call's conversation is stored: a `call.ended` already written (and waiting for
    it) now carries its summary and end reason, and goes out at once."""
    call = await _current(session, select(Call).where(Call.id == call_id))
    if call is None or call.status not in FINAL_STATUSES:
        return
    event_id = call_ended_event_id(call_id)
    await repository.replace_data(session, event_id, _call_data(call, "call.ended"), utcnow())


def call_ended_event_id(call_id: str) -> str:
    """A call's one `call.ended` event: its id follows from the call's."""
    return "evt_end_" + call_id.removeprefix("call_")


def _call_data(call: Call, type: str) -> dict[str, Any]:
    data: dict[str, Any] = {
        "call_id": call.id,
        "campaign_id": call.campaign_id,
        "recipient_id": f"rcp_{call.recipient_id}" if call.recipient_id is not None else None,
        "attempt": call.attempt,
        "to_number": call.to_number,
        "from_number": call.from_number,
        "phone_number_id": call.phone_number_id,
        "assistant_id": call.assistant_id,
        "provider": call.provider,
        "provider_call_sid": call.provider_call_sid,
        "status": call.status,
        "started_at": _when(call.started_at or call.dial_started_at),
    }
    if type == "call.ended":
        data |= {
            "outcome": attempt_outcome(call.status, call.answered_by, call.answered_at is not None),
            "answered_by": call.answered_by,
            "ended_reason": call.ended_reason,
            "answered_at": _when(call.answered_at),
            "ended_at": _when(call.ended_at),
            "duration_seconds": call.duration_seconds,
            "summary": call.summary,
            "transcript_url": f"/calls/{call.id}",
        }
    return data


async def emit_recipient_final(
    session: AsyncSession, recipient_id: int, user_id: str | None = None
) -> str | None:
    """`recipient.final`: a campaign recipient reached a final status (call it after that).
    `user_id`, the campaign's owner, when the caller knows it."""
    owner = user_id or (
        select(Campaign.user_id)
        .join(CampaignRecipient, CampaignRecipient.campaign_id == Campaign.id)
        .where(CampaignRecipient.id == recipient_id)
        .scalar_subquery()
    )
    endpoints = await repository.subscribers(session, owner, "recipient.final")
    if not endpoints:
        return None
    query = select(CampaignRecipient, Campaign.user_id).join(
        Campaign, Campaign.id == CampaignRecipient.campaign_id
    )
    await session.flush()
    row = (
        await session.execute(
            query.where(CampaignRecipient.id == recipient_id).execution_options(
                populate_existing=True
            )
        )
    ).first()
    if row is None:
        return None
    recipient, user_id = row
    return await repository.write_event(
        session, user_id, "recipient.final", _recipient_data(recipient), endpoints
    )


async def emit_recipients_final(
    session: AsyncSession, user_id: str, recipient_ids: Sequence[int]
) -> list[str]:
    """`recipient.final` for many recipients of one account at once (a claim batch that
    skipped some): one read of the endpoints, one of the recipients, two INSERTs."""
    if not recipient_ids:
        return []
    endpoints = await repository.subscribers(session, user_id, "recipient.final")
    if not endpoints:
        return []
    query = (
        select(CampaignRecipient)
        .where(CampaignRecipient.id.in_(list(recipient_ids)))
        .order_by(CampaignRecipient.campaign_id, CampaignRecipient.position)
    )
    await session.flush()
    rows = (await session.scalars(query.execution_options(populate_existing=True))).all()
    datas = [_recipient_data(recipient) for recipient in rows]
    return await repository.write_events(session, user_id, "recipient.final", datas, endpoints)


def _recipient_data(recipient: CampaignRecipient) -> dict[str, Any]:
    return {
        "campaign_id": recipient.campaign_id,
        "recipient_id": f"rcp_{recipient.id}",
        "phone_number": recipient.phone_number,
        "status": recipient.status,
        "status_reason": recipient.status_reason,
        "attempts": recipient.attempts,
        "last_outcome": recipient.last_outcome,
        "last_call_id": recipient.last_call_id,
        "metadata": recipient.recipient_metadata,
    }


async def _current(session: AsyncSession, query: Select[Any]) -> Any:
    """The row as the transaction sees it now: pending ORM changes are flushed first, and a
    copy already in the session is refreshed (the dialer changes rows with Core statements)."""
    await session.flush()
    return (await session.scalars(query.execution_options(populate_existing=True))).one_or_none()


def body_of(
    event_id: str, type: str, created_at: datetime, data: dict[str, Any], base_url: str
) -> dict[str, Any]:
    """The event as sent: links in `data` (keys ending in `_url` holding an API path) are
    made absolute with the service's public base URL."""
    linked = {
        key: base_url + value
        if key.endswith("_url") and isinstance(value, str) and value.startswith("/")
        else value
        for key, value in data.items()
    }
    return {
        "id": event_id,
        "type": type,
        "created_at": format_timestamp(created_at),
        "data": linked,
    }


def render(
    event_id: str, type: str, created_at: datetime, data: dict[str, Any], base_url: str
) -> bytes:
    """The exact bytes POSTed (and signed): compact JSON, UTF-8."""
    body = body_of(event_id, type, created_at, data, base_url)
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
