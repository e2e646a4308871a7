"""Webhook endpoints: register (the secret is shown once), read, delete, and their delivery log."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from outdial.errors import Conflict, NotFound
from outdial.ids import new_id
from outdial.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent
from outdial.repository import get_owned, page_of
from outdial.schemas import Page
from outdial.secrets_store import CredentialBox
from outdial.webhook import repository, signing
from outdial.webhook.schemas import WebhookCreate

MAX_ENDPOINTS = 20


def seal_secret(box: CredentialBox, secret: str) -> bytes:
    return box.seal({"secret": secret})


def open_secret(box: CredentialBox, sealed: bytes) -> str:
    return str(box.open(sealed)["secret"])


async def create(
    session: AsyncSession, user_id: str, body: WebhookCreate, box: CredentialBox
) -> tuple[WebhookEndpoint, str]:
    """The new endpoint and its signing secret (the only time the secret leaves the server)."""
    if await repository.count_endpoints(session, user_id) >= MAX_ENDPOINTS:
        raise Conflict(f"An account can register at most {MAX_ENDPOINTS} webhooks")
    secret = signing.new_secret()
    endpoint = WebhookEndpoint(
        id=new_id("wh"),
        user_id=user_id,
        url=body.url,
        description=body.description,
        events=list(body.events) if body.events is not None else None,
        secret=seal_secret(box, secret),
    )
    session.add(endpoint)
    await session.flush()
    return endpoint, secret


async def get(session: AsyncSession, user_id: str, webhook_id: str) -> WebhookEndpoint:
    endpoint = await get_owned(session, WebhookEndpoint, user_id, webhook_id)
    if endpoint is None:
        raise NotFound("Webhook")
    return endpoint


async def delete(session: AsyncSession, user_id: str, webhook_id: str) -> None:
    """Delete the endpoint with its pending deliveries and its delivery log."""
    endpoint = await get(session, user_id, webhook_id)
    await session.delete(endpoint)
    await session.flush()


async def page(
    session: AsyncSession, user_id: str, page: Page
) -> tuple[Sequence[WebhookEndpoint], int]:
    return await page_of(
        session,
        repository.endpoints_of(user_id),
        page,
        WebhookEndpoint.created_at.desc(),
        WebhookEndpoint.id,
    )


@dataclass(frozen=True)
class LoggedDelivery:
    delivery: WebhookDelivery
    event: WebhookEvent
    attempts: list[WebhookAttempt]


async def deliveries_page(
    session: AsyncSession, user_id: str, webhook_id: str, page: Page, status: str | None
) -> tuple[list[LoggedDelivery], int]:
    """A page of the endpoint's deliveries, newest first, each with its attempts."""
    endpoint = await get(session, user_id, webhook_id)
    query = repository.deliveries_of(endpoint.id, status)
    rows = (
        await session.execute(
            query.order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id)
            .limit(page.limit)
            .offset(page.offset)
        )
    ).all()
    total = await repository.count_deliveries(session, endpoint.id, status)
    logs = await repository.attempts_of(session, [delivery.id for delivery, _event in rows])
    logged = [LoggedDelivery(delivery, event, logs[delivery.id]) for delivery, event in rows]
    return logged, total
