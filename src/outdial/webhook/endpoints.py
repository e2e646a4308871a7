from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from outdial.auth.dependencies import Session, UserId
from outdial.models import WebhookEndpoint
from outdial.schemas import Page, page_params, set_total
from outdial.webhook import events, service
from outdial.webhook.schemas import (
    DeliveryAttempt,
    DeliveryStatus,
    Event,
    Webhook,
    WebhookCreate,
    WebhookCreated,
    WebhookDelivery,
)

router = APIRouter(prefix="/webhooks", tags=["webhooks"])
Paging = Annotated[Page, Depends(page_params)]


def to_schema(row: WebhookEndpoint) -> Webhook:
    return Webhook.model_validate(row)


@router.post("", response_model=WebhookCreated)
async def create_webhook(
    body: WebhookCreate, request: Request, session: Session, user_id: UserId
) -> WebhookCreated:
    """Register an endpoint; the response holds its signing secret, shown this once."""
    endpoint, secret = await service.create(
        session, user_id, body, request.app.state.credential_box
    )
    return WebhookCreated(**to_schema(endpoint).model_dump(), secret=secret)


@router.get("", response_model=list[Webhook])
async def list_webhooks(
    session: Session, user_id: UserId, response: Response, page: Paging
) -> list[Webhook]:
    rows, total = await service.page(session, user_id, page)
    set_total(response, total)
    return [to_schema(row) for row in rows]


@router.get("/{webhook_id}", response_model=Webhook)
async def get_webhook(webhook_id: str, session: Session, user_id: UserId) -> Webhook:
    return to_schema(await service.get(session, user_id, webhook_id))


@router.delete("/{webhook_id}", status_code=204)
async def delete_webhook(webhook_id: str, session: Session, user_id: UserId) -> Response:
    """Stop sending to this endpoint; its pending deliveries and its log are deleted too."""
    await service.delete(session, user_id, webhook_id)
    return Response(status_code=204)


@router.get("/{webhook_id}/deliveries", response_model=list[WebhookDelivery])
async def list_webhook_deliveries(
    webhook_id: str,
    request: Request,
    session: Session,
    user_id: UserId,
    response: Response,
    page: Paging,
    status: Annotated[DeliveryStatus | None, Query()] = None,
) -> list[WebhookDelivery]:
    """The delivery log: newest first, each delivery with its event and every attempt."""
    logged, total = await service.deliveries_page(session, user_id, webhook_id, page, status)
    set_total(response, total)
    base_url = request.app.state.settings.resolved_public_base_url
    return [
        WebhookDelivery(
            id=item.delivery.id,
            event=Event.model_validate(
                events.body_of(
                    item.event.id, item.event.type, item.event.created_at, item.event.data, base_url
                )
            ),
            status=item.delivery.status,  # type: ignore[arg-type]
            attempts=[
                DeliveryAttempt(
                    attempt=a.attempt,
                    started_at=a.started_at,
                    finished_at=a.finished_at,
                    duration_ms=a.duration_ms,
                    status_code=a.status_code,
                    error=a.error,
                    response_body=a.response_body,
                )
                for a in item.attempts
            ],
            next_attempt_at=item.delivery.next_attempt_at,
            last_status_code=item.delivery.last_status_code,
            last_error=item.delivery.last_error,
            created_at=item.delivery.created_at,
            delivered_at=item.delivery.delivered_at,
        )
        for item in logged
    ]
