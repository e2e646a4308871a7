"""start / pause / resume / stop: the status machine applied to stored campaigns.

Each change queues its lifecycle event (`campaign.started`, …) in its own transaction, so
an event exists exactly when its change was committed; a refused change emits nothing.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from outdial.campaign import recipients as recipient_rules
from outdial.campaign import repository, service
from outdial.campaign.state import WAITING_AT_THE_END, TransitionRefused, next_status
from outdial.errors import Conflict
from outdial.models import Campaign, RecipientList, utcnow
from outdial.webhook import events

_RENDER_BATCH = 5_000


async def _transition(
    session: AsyncSession, user_id: str, campaign_id: str, action: str
) -> Campaign:
    campaign = await service.get(session, user_id, campaign_id, lock=True)
    try:
        campaign.status = next_status(campaign.status, action)
    except TransitionRefused as exc:
        raise Conflict(str(exc)) from None
    campaign.updated_at = utcnow()
    return campaign


async def start(session: AsyncSession, user_id: str, campaign_id: str) -> Campaign:
    """Snapshot the attached list, check every template renders, and set the campaign running."""
    campaign = await _transition(session, user_id, campaign_id, "start")
    now = utcnow()
    if campaign.schedule_end_time is not None and campaign.schedule_end_time <= now:
        raise Conflict("Campaign cannot start: its scheduleEndTime has passed")
    list_id = campaign.recipient_list_id
    # The list's row FOR SHARE: an upload or a delete of the list (which hold it FOR UPDATE)
    # finishes before the snapshot's counts and copy begin, and waits for them after.
    attached = None
    if list_id is not None:
        attached = await session.get(RecipientList, list_id, with_for_update={"read": True})
    if attached is not None:
        deltas = await repository.snapshot_list(session, campaign, attached.id)
        await repository.add_counts(session, campaign.id, deltas)
    counts = (await repository.read_counts(session, [campaign.id]))[campaign.id]
    if counts["total"] == 0:
        raise Conflict("Campaign cannot start: it has no recipients")
    await _check_templates(session, campaign)
    campaign.started_at = now
    await session.flush()
    await events.emit_campaign(session, campaign, "campaign.started")
    return campaign


async def _check_templates(session: AsyncSession, campaign: Campaign) -> None:
    compiled = recipient_rules.templates_of(campaign)
    if not compiled:
        return
    after = 0
    while True:
        batch = await repository.recipients_in_order(session, campaign.id, after, _RENDER_BATCH)
        if not batch:
            return
        failures = recipient_rules.template_failures(
            compiled,
            (
                (f"rcp_{r.id}", r.phone_number, r.recipient_metadata)
                for r in batch
                if r.status == "pending"
            ),
        )
        recipient_rules.raise_template_failures(failures, ["campaign"])
        after = batch[-1].position


async def pause(session: AsyncSession, user_id: str, campaign_id: str) -> Campaign:
    campaign = await _transition(session, user_id, campaign_id, "pause")
    await session.flush()
    await events.emit_campaign(session, campaign, "campaign.paused")
    return campaign


async def resume(session: AsyncSession, user_id: str, campaign_id: str) -> Campaign:
    campaign = await _transition(session, user_id, campaign_id, "resume")
    campaign.status_reason = None
    campaign.resumed_at = utcnow()
    await session.flush()
    await events.emit_campaign(session, campaign, "campaign.resumed")
    return campaign


async def stop(session: AsyncSession, user_id: str, campaign_id: str) -> Campaign:
    """Complete the campaign; recipients no live call holds become `cancelled`."""
    campaign = await _transition(session, user_id, campaign_id, "stop")
    campaign.ended_reason = "stopped"
    campaign.completed_at = utcnow()
    await repository.add_counts(
        session,
        campaign.id,
        await repository.end_waiting(session, campaign.id, *WAITING_AT_THE_END["stopped"]),
    )
    await session.flush()
    await events.emit_campaign(session, campaign, "campaign.completed")
    return campaign
