"""Campaigns: create, read, edit by the rules of their status, delete."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from outdial.campaign import hours, repository
from outdial.campaign import recipients as recipient_rules
from outdial.campaign.schemas import (
    Campaign as CampaignOut,
)
from outdial.campaign.schemas import (
    CampaignCreate,
    CampaignUpdate,
    RecipientInput,
    RetryPolicy,
)
from outdial.campaign.state import refused_fields
from outdial.dialer import store
from outdial.dialer.rules import RETRYABLE
from outdial.errors import Conflict, Invalid, NotFound
from outdial.ids import new_id
from outdial.models import (
    Assistant,
    Campaign,
    CampaignRecipient,
    PhoneNumber,
    RecipientList,
    utcnow,
)
from outdial.repository import get_owned, page_of
from outdial.schemas import Page
from outdial.webhook import events as webhook_events

DEFAULT_AMD_TIMEOUT = 30
VOBIZ_AMD_MS = (2000, 10_000)


async def get(
    session: AsyncSession, user_id: str, campaign_id: str, *, lock: bool = False
) -> Campaign:
    campaign = await get_owned(session, Campaign, user_id, campaign_id, for_update=lock)
    if campaign is None:
        raise NotFound("Campaign")
    return campaign


async def _owned(
    session: AsyncSession, model: type[Any], user_id: str, row_id: str, what: str
) -> Any:
    row = await get_owned(session, model, user_id, row_id)
    if row is None:
        raise NotFound(what)
    return row


def _check_schedule(start: Any, end: Any) -> None:
    if start is not None and end is not None and end <= start:
        raise Invalid(
            ["body", "scheduleEndTime"], "scheduleEndTime must be after scheduleStartTime"
        )


async def create(
    session: AsyncSession, user_id: str, body: CampaignCreate, region: str
) -> Campaign:
    assistant = await _owned(session, Assistant, user_id, body.assistant_id, "Assistant")
    number = await _owned(session, PhoneNumber, user_id, body.phone_number_id, "Phone number")
    if body.recipient_list_id is not None:
        await _owned(session, RecipientList, user_id, body.recipient_list_id, "Recipient list")
    if body.channel != number.provider:
        raise Invalid(
            ["body", "channel"],
            f"channel must be {number.provider!r}, the provider of the phone number",
        )
    _check_schedule(body.schedule_start_time, body.schedule_end_time)
    prepared = recipient_rules.prepare(body.recipients or [], region, ["body", "recipients"])
    compiled = recipient_rules.compiled_templates(
        {name: getattr(body, name) for name in recipient_rules.TEMPLATE_FIELDS}
    )
    recipient_rules.raise_template_failures(
        recipient_rules.template_failures(
            compiled, ((str(i), p.phone_number, p.metadata) for i, p in enumerate(prepared))
        ),
        ["body", "recipients"],
    )
    campaign = Campaign(
        id=new_id("cmp"),
        user_id=user_id,
        name=body.name,
        assistant_id=assistant.id,
        phone_number_id=number.id,
        channel=body.channel,
        status="draft",
        max_concurrency=body.max_concurrency,
        retry_policy=(body.retry_policy or RetryPolicy()).model_dump(mode="json"),
        speech_settings=_speech(body.speech_settings),
        calling_hours=body.calling_hours.model_dump(mode="json") if body.calling_hours else None,
        schedule_start_time=body.schedule_start_time,
        schedule_end_time=body.schedule_end_time,
        campaign_context=body.campaign_context,
        opening_message_template=body.opening_message_template,
        returning_message_template=body.returning_message_template,
        voicemail_message_template=body.voicemail_message_template,
        use_returning_greeting=body.use_returning_greeting,
        use_short_term_summaries=body.use_short_term_summaries,
        short_term_summaries_limit=body.short_term_summaries_limit or 3,
        machine_detection_timeout_seconds=body.machine_detection_timeout_seconds,
        recipient_list_id=body.recipient_list_id,
        last_position=0,
    )
    session.add(campaign)
    await session.flush()
    await repository.init_counts(session, campaign.id)
    if prepared:
        await repository.add_counts(
            session, campaign.id, await recipient_rules.add(session, campaign, prepared)
        )
    await session.flush()
    return campaign


def _speech(value: Any) -> dict[str, Any]:
    return value.model_dump(exclude_none=True) if value is not None else {}


async def update(
    session: AsyncSession, user_id: str, campaign_id: str, body: CampaignUpdate, region: str
) -> Campaign:
    campaign = await get(session, user_id, campaign_id, lock=True)
    changes = body.model_dump(exclude_unset=True)
    refused = refused_fields(campaign.status, changes)
    if refused:
        raise Conflict(f"Campaign is {campaign.status}: {', '.join(refused)} cannot be changed")
    if changes.get("recipient_list_id") is not None:
        await _owned(
            session, RecipientList, user_id, changes["recipient_list_id"], "Recipient list"
        )
    start = changes.get("schedule_start_time", campaign.schedule_start_time)
    _check_schedule(start, changes.get("schedule_end_time", campaign.schedule_end_time))
    inline = changes.pop("recipients", None)
    prepared = recipient_rules.prepare(body.recipients or [], region, ["body", "recipients"])
    _apply(campaign, body, changes)
    compiled = recipient_rules.templates_of(campaign)
    recipient_rules.raise_template_failures(
        recipient_rules.template_failures(
            compiled, ((str(i), p.phone_number, p.metadata) for i, p in enumerate(prepared))
        ),
        ["body", "recipients"],
    )
    if inline:
        await repository.add_counts(
            session, campaign.id, await recipient_rules.add(session, campaign, prepared)
        )
    campaign.updated_at = utcnow()
    await _apply_to_waiting(session, campaign, changes)
    await session.flush()
    return campaign


async def _apply_to_waiting(
    session: AsyncSession, campaign: Campaign, changes: dict[str, Any]
) -> None:
    """Live edits apply to the next dial, so to recipients already waiting for one: retries
    the edited policy no longer allows end with their last outcome, and recipients put off
    until the old calling hours opened are checked against the new ones at once. (The
    campaign row is held `FOR UPDATE`: no claim or end of a call runs meanwhile.)"""
    if "calling_hours" in changes:
        await repository.wake_put_off(session, campaign.id, hours.PUT_OFF)
    if "retry_policy" not in changes:
        return
    policy = campaign.retry_policy
    retried = [outcome for outcome in policy["retry_on"] if outcome in RETRYABLE]
    deltas, ended = await repository.end_retries_refused(
        session, campaign.id, int(policy["max_attempts"]), retried
    )
    if not ended:
        return
    await repository.add_counts(session, campaign.id, deltas)
    await webhook_events.emit_recipients_final(session, campaign.user_id, ended)
    await store.complete_if_done(session, campaign.id, utcnow())


def _apply(campaign: Campaign, body: CampaignUpdate, changes: dict[str, Any]) -> None:
    for name, value in changes.items():
        if name == "retry_policy":
            value = (body.retry_policy or RetryPolicy()).model_dump(mode="json")
        elif name == "speech_settings":
            value = {**campaign.speech_settings, **_speech(body.speech_settings)}
        elif name == "calling_hours":
            value = body.calling_hours.model_dump(mode="json") if body.calling_hours else None
        elif name == "short_term_summaries_limit":
            value = value or 3
        elif (
            name
            in ("name", "max_concurrency", "use_returning_greeting", "use_short_term_summaries")
            and value is None
        ):
            raise Invalid(["body", name], f"{name} cannot be null")
        setattr(campaign, name, getattr(body, name) if name.startswith("schedule_") else value)


async def delete(session: AsyncSession, user_id: str, campaign_id: str) -> None:
    campaign = await get(session, user_id, campaign_id, lock=True)
    if campaign.status not in ("draft", "completed"):
        raise Conflict(f"Campaign is {campaign.status}: stop it before deleting it")
    await session.delete(campaign)
    await session.flush()


async def append_recipients(
    session: AsyncSession,
    user_id: str,
    campaign_id: str,
    items: Sequence[RecipientInput],
    region: str,
) -> Campaign:
    campaign = await get(session, user_id, campaign_id, lock=True)
    if campaign.status == "completed":
        raise Conflict("Campaign is completed: recipients cannot be added")
    prepared = recipient_rules.prepare(items, region, ["body", "recipients"])
    recipient_rules.raise_template_failures(
        recipient_rules.template_failures(
            recipient_rules.templates_of(campaign),
            ((str(i), p.phone_number, p.metadata) for i, p in enumerate(prepared)),
        ),
        ["body", "recipients"],
    )
    await repository.add_counts(
        session, campaign.id, await recipient_rules.add(session, campaign, prepared)
    )
    campaign.updated_at = utcnow()
    await session.flush()
    return campaign


async def page(
    session: AsyncSession, user_id: str, page: Page, status: str | None
) -> tuple[Sequence[Campaign], int]:
    query = repository.campaigns_query(user_id, status)
    return await page_of(session, query, page, Campaign.created_at.desc(), Campaign.id)


async def recipients_page(
    session: AsyncSession, user_id: str, campaign_id: str, status: str | None, page: Page
) -> tuple[Sequence[CampaignRecipient], int]:
    """A page of the campaign's recipients; the total comes from the counters, not a COUNT."""
    campaign = await get(session, user_id, campaign_id)
    counts = (await repository.read_counts(session, [campaign.id]))[campaign.id]
    rows = (await session.scalars(repository.recipients_query(campaign.id, status, page))).all()
    return rows, counts[status or "total"]


async def describe(session: AsyncSession, campaigns: Sequence[Campaign]) -> list[CampaignOut]:
    """Campaign responses with names, caller number, list facts and counts (batched)."""
    if not campaigns:
        return []
    assistants, numbers, lists = await repository.related(session, campaigns)
    counts = await repository.read_counts(session, [c.id for c in campaigns])
    return [
        _to_schema(
            c,
            assistants.get(c.assistant_id),
            numbers.get(c.phone_number_id),
            lists.get(c.recipient_list_id or ""),
            counts[c.id],
        )
        for c in campaigns
    ]


def amd_timeout(campaign: Campaign | None, assistant: Assistant | None) -> int:
    """The campaign's machine-detection timeout, else the assistant's, else the default."""
    if campaign is not None and campaign.machine_detection_timeout_seconds is not None:
        return campaign.machine_detection_timeout_seconds
    configured = (assistant.config if assistant else {}).get("machine_detection_timeout_seconds")
    return int(configured) if configured else DEFAULT_AMD_TIMEOUT


def warnings_for(campaign: Campaign, timeout: int) -> list[str]:
    low, high = VOBIZ_AMD_MS
    if campaign.channel == "vobiz" and not low <= timeout * 1000 <= high:
        sent = min(max(timeout * 1000, low), high)
        return [
            f"Vobiz accepts machine_detection_time {low}..{high} ms: the "
            f"{timeout} s machine-detection timeout is sent as {sent} ms"
        ]
    return []


def _to_schema(
    campaign: Campaign,
    assistant: Assistant | None,
    number: PhoneNumber | None,
    recipient_list: RecipientList | None,
    counts: dict[str, int],
) -> CampaignOut:
    timeout = amd_timeout(campaign, assistant)
    assistant_speech = (assistant.config if assistant else {}).get("speech_settings", {})
    return CampaignOut(
        id=campaign.id,
        name=campaign.name,
        assistant_id=campaign.assistant_id,
        channel=campaign.channel,
        phone_number_id=campaign.phone_number_id,
        status=campaign.status,
        max_concurrency=campaign.max_concurrency,
        retry_policy=campaign.retry_policy,
        speech_settings={**assistant_speech, **campaign.speech_settings},
        assistant_name=assistant.name if assistant else None,
        caller_id_number=number.phone_number if number else None,
        schedule_start_time=campaign.schedule_start_time,
        schedule_end_time=campaign.schedule_end_time,
        campaign_context=campaign.campaign_context,
        opening_message_template=campaign.opening_message_template,
        use_returning_greeting=campaign.use_returning_greeting,
        use_short_term_summaries=campaign.use_short_term_summaries,
        short_term_summaries_limit=campaign.short_term_summaries_limit,
        machine_detection_timeout_seconds=timeout,
        recipient_list_id=campaign.recipient_list_id,
        recipient_list_name=recipient_list.name if recipient_list else None,
        recipient_list_row_count=recipient_list.row_count if recipient_list else None,
        counts=counts,
        created_at=campaign.created_at,
        updated_at=campaign.updated_at,
        ended_reason=campaign.ended_reason,
        status_reason=campaign.status_reason,
        calling_hours=campaign.calling_hours,
        returning_message_template=campaign.returning_message_template,
        voicemail_message_template=campaign.voicemail_message_template,
        started_at=campaign.started_at,
        completed_at=campaign.completed_at,
        warnings=warnings_for(campaign, timeout),
    )
