from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Body, Depends, Query, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from outdial.auth.dependencies import Session, UserId
from outdial.call import service as call_service
from outdial.call.endpoints import to_schema as call_schema
from outdial.call.schemas import Call, CallStatus
from outdial.campaign import lifecycle, service
from outdial.campaign.schemas import (
    Campaign,
    CampaignCreate,
    CampaignRecipient,
    CampaignUpdate,
    RecipientsAppend,
    StopRequest,
)
from outdial.campaign.state import RECIPIENT_STATUSES
from outdial.dialer import control
from outdial.idempotency import service as idempotency_service
from outdial.idempotency.dependencies import Idempotency
from outdial.models import Campaign as CampaignRow
from outdial.models import CampaignRecipient as RecipientRow
from outdial.schemas import Page, page_params, set_total

router = APIRouter(prefix="/campaign", tags=["campaigns"])

CampaignStatus = Literal["draft", "running", "paused", "completed"]
RecipientStatus = Literal[RECIPIENT_STATUSES]  # type: ignore[valid-type]
Paging = Annotated[Page, Depends(page_params)]


def _region(request: Request) -> str:
    return str(request.app.state.settings.default_region)


async def _one(session: AsyncSession, campaign: CampaignRow) -> Campaign:
    return (await service.describe(session, [campaign]))[0]


@router.post("", response_model=Campaign)
async def create_campaign(
    body: CampaignCreate,
    request: Request,
    session: Session,
    user_id: UserId,
    idempotency: Idempotency,
) -> Campaign | Response:
    if (first := await idempotency_service.claim(session, idempotency)) is not None:
        return first
    campaign = await _one(session, await service.create(session, user_id, body, _region(request)))
    return await idempotency_service.remember(session, idempotency, campaign)


@router.get("", response_model=list[Campaign])
async def list_campaigns(
    session: Session,
    user_id: UserId,
    response: Response,
    page: Paging,
    status: Annotated[CampaignStatus | None, Query()] = None,
) -> list[Campaign]:
    rows, total = await service.page(session, user_id, page, status)
    set_total(response, total)
    return await service.describe(session, rows)


@router.get("/{campaign_id}", response_model=Campaign)
async def get_campaign(campaign_id: str, session: Session, user_id: UserId) -> Campaign:
    return await _one(session, await service.get(session, user_id, campaign_id))


@router.patch("/{campaign_id}", response_model=Campaign)
async def update_campaign(
    campaign_id: str, body: CampaignUpdate, request: Request, session: Session, user_id: UserId
) -> Campaign:
    campaign = await service.update(session, user_id, campaign_id, body, _region(request))
    return await _one(session, campaign)


@router.delete("/{campaign_id}", status_code=204)
async def delete_campaign(campaign_id: str, session: Session, user_id: UserId) -> Response:
    await service.delete(session, user_id, campaign_id)
    return Response(status_code=204)


@router.post("/{campaign_id}/start", response_model=Campaign)
async def start_campaign(
    campaign_id: str, request: Request, session: Session, user_id: UserId
) -> Campaign:
    campaign = await lifecycle.start(session, user_id, campaign_id)
    await session.commit()
    _wake(request, campaign.id)
    return await _one(session, campaign)


@router.post("/{campaign_id}/pause", response_model=Campaign)
async def pause_campaign(
    campaign_id: str, request: Request, session: Session, user_id: UserId
) -> Campaign:
    """No call is placed after this returns; live calls finish normally."""
    campaign = await lifecycle.pause(session, user_id, campaign_id)
    await session.commit()
    await control.settle(request.app.state.sessionmaker, campaign.id)
    return await _one(session, campaign)


@router.post("/{campaign_id}/resume", response_model=Campaign)
async def resume_campaign(
    campaign_id: str, request: Request, session: Session, user_id: UserId
) -> Campaign:
    campaign = await lifecycle.resume(session, user_id, campaign_id)
    await session.commit()
    _wake(request, campaign.id)
    return await _one(session, campaign)


@router.post("/{campaign_id}/stop", response_model=Campaign)
async def stop_campaign(
    campaign_id: str,
    request: Request,
    session: Session,
    user_id: UserId,
    body: Annotated[StopRequest | None, Body()] = None,
) -> Campaign:
    """Recipients not yet dialed are cancelled; `hangup_active` also ends the live calls."""
    campaign = await lifecycle.stop(session, user_id, campaign_id)
    await session.commit()
    sessionmaker = request.app.state.sessionmaker
    await control.settle(sessionmaker, campaign.id)
    if body is not None and body.hangup_active:
        async with sessionmaker() as reader:
            live = await control.live_calls(reader, campaign.id)
        await control.hang_up(sessionmaker, request.app.state.carriers, live)
    return await _one(session, campaign)


def _wake(request: Request, campaign_id: str) -> None:
    dialer = getattr(request.app.state, "dialer", None)
    if dialer is not None:
        dialer.wakeup.campaign(campaign_id)


def recipient_schema(row: RecipientRow) -> CampaignRecipient:
    return CampaignRecipient(
        id=f"rcp_{row.id}",
        position=row.position,
        phone_number=row.phone_number,
        metadata=row.recipient_metadata,
        assistant_overrides=row.assistant_overrides,
        status=row.status,
        status_reason=row.status_reason,
        attempts=row.attempts,
        last_outcome=row.last_outcome,
        next_attempt_at=row.next_attempt_at,
        last_call_id=row.last_call_id,
    )


@router.get("/{campaign_id}/recipients", response_model=list[CampaignRecipient])
async def list_campaign_recipients(
    campaign_id: str,
    session: Session,
    user_id: UserId,
    response: Response,
    page: Paging,
    status: Annotated[RecipientStatus | None, Query()] = None,
) -> list[CampaignRecipient]:
    rows, total = await service.recipients_page(session, user_id, campaign_id, status, page)
    set_total(response, total)
    return [recipient_schema(row) for row in rows]


@router.post("/{campaign_id}/recipients", response_model=Campaign)
async def append_campaign_recipients(
    campaign_id: str, body: RecipientsAppend, request: Request, session: Session, user_id: UserId
) -> Campaign:
    campaign = await service.append_recipients(
        session, user_id, campaign_id, body.recipients, _region(request)
    )
    return await _one(session, campaign)


@router.get("/{campaign_id}/calls", response_model=list[Call])
async def list_campaign_calls(
    campaign_id: str,
    session: Session,
    user_id: UserId,
    response: Response,
    page: Paging,
    status: Annotated[CallStatus | None, Query()] = None,
) -> list[Call]:
    campaign = await service.get(session, user_id, campaign_id)
    rows, total = await call_service.page(
        session, user_id, page, campaign_id=campaign.id, status=status
    )
    set_total(response, total)
    return [call_schema(row) for row in rows]
