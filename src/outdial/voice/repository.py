"""The voice runtime's SQL: what a call needs to start talking, and what it leaves behind.

Only conversation columns are written here (`assistant_config`, `transcript`, `summary`,
message counts, latency figures, recording URLs). A call's status, its recipient and the
campaign counters are finalised by the provider's callbacks (`dialer/store.py`), never by
the voice runtime.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import and_, case, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from outdial.database import dialect_insert
from outdial.models import (
    Assistant,
    Call,
    CallEvent,
    Campaign,
    CampaignRecipient,
    PhoneNumber,
    utcnow,
)
from outdial.models.call_event import MEDIA_CLAIM_KEY
from outdial.telephony.base import FINAL_STATES, CallState, Verdict
from outdial.voice.config import CallContext, CampaignSettings, EarlierCall, summaries_wanted

FINAL = tuple(state.value for state in FINAL_STATES)


@dataclass(frozen=True)
class CallGate:
    """What deciding whether a media stream may reach the assistant reads of the call."""

    id: str
    provider: str
    status: str
    answered_by: str | None
    secret_hash: str | None


async def gate(session: AsyncSession, call_id: str) -> CallGate | None:
    row = (
        await session.execute(
            select(Call.id, Call.provider, Call.status, Call.answered_by, Call.secret_hash).where(
                Call.id == call_id
            )
        )
    ).first()
    return CallGate(*row) if row is not None else None


async def claim_media(session: AsyncSession, call_id: str, stream_id: str) -> bool:
    """Record the call's one media connection; False when a stream already claimed it.

    The claim is an event under a unique (call, key), so it holds across processes and a
    second connection with the same (leaked or replayed) secret is refused.
    """
    statement = (
        dialect_insert(session, CallEvent.__table__)
        .values(
            call_id=call_id,
            dedupe_key=MEDIA_CLAIM_KEY,
            payload={"stream": stream_id[:100]},
            received_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["call_id", "dedupe_key"])
        .returning(CallEvent.call_id)
    )
    return (await session.execute(statement)).first() is not None


def _human_answered(user_id: str, to_number: str, call_id: str) -> Any:
    """Earlier calls of this account to this number that a person (or nobody could tell) took."""
    return and_(
        Call.user_id == user_id,
        Call.to_number == to_number,
        Call.id != call_id,
        Call.answered_at.is_not(None),
        Call.status.in_(FINAL),
        or_(Call.answered_by.is_(None), Call.answered_by != Verdict.MACHINE.value),
    )


async def has_earlier_conversation(
    session: AsyncSession, user_id: str, to_number: str, call_id: str
) -> bool:
    query = select(Call.id).where(_human_answered(user_id, to_number, call_id)).limit(1)
    return (await session.scalar(query)) is not None


async def earlier_summaries(
    session: AsyncSession, user_id: str, to_number: str, call_id: str, limit: int
) -> list[EarlierCall]:
    """The newest `limit` summaries of earlier conversations with this person, newest first."""
    if limit <= 0:
        return []
    query = (
        select(Call.id, Call.ended_at, Call.summary)
        .where(_human_answered(user_id, to_number, call_id), Call.summary.is_not(None))
        .order_by(Call.created_at.desc(), Call.id.desc())
        .limit(limit)
    )
    return [EarlierCall(row.id, row.ended_at, row.summary) for row in await session.execute(query)]


def _campaign_settings(campaign: Campaign) -> CampaignSettings:
    return CampaignSettings(
        speech_settings=campaign.speech_settings or {},
        campaign_context=campaign.campaign_context,
        machine_detection_timeout_seconds=campaign.machine_detection_timeout_seconds,
        opening_message_template=campaign.opening_message_template,
        returning_message_template=campaign.returning_message_template,
        use_returning_greeting=campaign.use_returning_greeting,
        use_short_term_summaries=campaign.use_short_term_summaries,
        short_term_summaries_limit=campaign.short_term_summaries_limit or 3,
    )


async def call_context(session: AsyncSession, call: Call) -> CallContext:
    """Read the assistant, campaign, recipient and earlier calls a call's configuration needs."""
    assistant = await session.get(Assistant, call.assistant_id) if call.assistant_id else None
    campaign = await session.get(Campaign, call.campaign_id) if call.campaign_id else None
    recipient = (
        await session.get(CampaignRecipient, call.recipient_id) if call.recipient_id else None
    )
    settings = _campaign_settings(campaign) if campaign is not None else None
    context = CallContext(
        assistant=assistant.config if assistant is not None else {},
        phone_number=call.to_number,
        campaign=settings,
        metadata=recipient.recipient_metadata if recipient is not None else {},
        overrides=recipient.assistant_overrides if recipient is not None else {},
    )
    returning = settings is not None and settings.use_returning_greeting
    if returning:
        returning = await has_earlier_conversation(session, call.user_id, call.to_number, call.id)
    earlier = await earlier_summaries(
        session, call.user_id, call.to_number, call.id, summaries_wanted(context)
    )
    return replace(context, returning_contact=returning, earlier=earlier)


async def store_config(session: AsyncSession, call_id: str, config: dict[str, Any]) -> None:
    await session.execute(
        update(Call).where(Call.id == call_id).values(assistant_config=config, updated_at=utcnow())
    )


async def store_conversation(session: AsyncSession, call_id: str, **columns: Any) -> None:
    """Write the conversation's columns (transcript, summary, counts, latency figures)."""
    await session.execute(
        update(Call).where(Call.id == call_id).values(updated_at=utcnow(), **columns)
    )


async def owner_of(session: AsyncSession, call_id: str) -> str | None:
    """The call's account (its recordings are filed under it)."""
    return await session.scalar(select(Call.user_id).where(Call.id == call_id))


async def talk_ended(session: AsyncSession, call_id: str, reason: str) -> None:
    """Note what ended the conversation. The provider's final callback may come before or
    after: a call it has already ended as a conversation (`dialer/store.talked`) takes the
    reason now; otherwise `finish_call` takes it from `talk_ended_reason` when it comes."""
    reason = reason[:40]
    await session.execute(
        update(Call)
        .where(Call.id == call_id)
        .values(
            talk_ended_reason=reason,
            ended_reason=case(
                (
                    and_(
                        Call.status == CallState.COMPLETED.value,
                        or_(
                            Call.answered_by.is_(None),
                            Call.answered_by != Verdict.MACHINE.value,
                        ),
                    ),
                    reason,
                ),
                else_=Call.ended_reason,
            ),
        )
    )


@dataclass(frozen=True)
class ProviderLine:
    """What acting on a live call through its provider needs."""

    status: str
    provider_call_id: str
    from_number: str | None
    number: PhoneNumber
    config: dict[str, Any] | None


async def provider_line(session: AsyncSession, call_id: str) -> ProviderLine | None:
    """The call's provider id and caller number row; None before the provider has the call."""
    row = (
        await session.execute(
            select(
                Call.status,
                Call.provider_call_sid,
                Call.from_number,
                PhoneNumber,
                Call.assistant_config,
            )
            .join(PhoneNumber, PhoneNumber.id == Call.phone_number_id)
            .where(Call.id == call_id, Call.provider_call_sid.is_not(None))
        )
    ).first()
    return ProviderLine(*row) if row is not None else None


TRANSFER_KEY = "transfer"


async def claim_transfer(session: AsyncSession, call_id: str, payload: dict[str, Any]) -> bool:
    """Record the call's one transfer (`voice/transfer.py`); False when one was recorded."""
    statement = (
        dialect_insert(session, CallEvent.__table__)
        .values(call_id=call_id, dedupe_key=TRANSFER_KEY, payload=payload, received_at=utcnow())
        .on_conflict_do_nothing(index_elements=["call_id", "dedupe_key"])
        .returning(CallEvent.call_id)
    )
    return (await session.execute(statement)).first() is not None


async def drop_transfer(session: AsyncSession, call_id: str) -> None:
    """The provider refused the transfer: the call may be transferred again."""
    await session.execute(
        delete(CallEvent).where(CallEvent.call_id == call_id, CallEvent.dedupe_key == TRANSFER_KEY)
    )


async def transfer_of(session: AsyncSession, call_id: str) -> dict[str, Any] | None:
    """The call's transfer (number, mode, briefing, token hash), if it has one."""
    payload = await session.scalar(
        select(CallEvent.payload).where(
            CallEvent.call_id == call_id, CallEvent.dedupe_key == TRANSFER_KEY
        )
    )
    return dict(payload) if payload is not None else None


async def person_of(session: AsyncSession, call_id: str) -> tuple[str, dict[str, Any]] | None:
    """The number called and the recipient's metadata (empty for an ad-hoc call)."""
    row = (
        await session.execute(
            select(Call.to_number, CampaignRecipient.recipient_metadata)
            .outerjoin(CampaignRecipient, CampaignRecipient.id == Call.recipient_id)
            .where(Call.id == call_id)
        )
    ).first()
    if row is None:
        return None
    return row.to_number, dict(row.recipient_metadata or {})
