from __future__ import annotations

from typing import Any, Literal, get_args
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, Field, field_validator

from outdial.schemas import RequestModel, ResponseModel, Timestamp

EventType = Literal[
    "campaign.started",
    "campaign.paused",
    "campaign.resumed",
    "campaign.completed",
    "call.started",
    "call.ended",
    "recipient.final",
]
EVENT_TYPES: tuple[str, ...] = get_args(EventType)
DeliveryStatus = Literal["pending", "succeeded", "failed"]
URL_EXAMPLE = "https://crm.example.com/outdial-events"


def check_url(value: str) -> str:
    """An absolute http(s) URL with a host; anything else cannot be POSTed to."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - a port that is not a number raises here
    except ValueError:
        raise ValueError(f"not a valid URL (e.g. {URL_EXAMPLE})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"url must be an http:// or https:// URL with a host (e.g. {URL_EXAMPLE})")
    if any(character.isspace() or ord(character) < 32 for character in value):
        raise ValueError("url must not contain spaces or control characters")
    try:
        httpx.Request("POST", value)  # as the sender will: e.g. a host name IDNA can read
    except Exception:
        raise ValueError(f"not a valid URL (e.g. {URL_EXAMPLE})") from None
    return value


class WebhookCreate(RequestModel):
    url: str = Field(min_length=1, max_length=2000, examples=[URL_EXAMPLE])
    events: list[EventType] | None = Field(
        default=None, min_length=1, description="Event types to receive; omitted or null: all."
    )
    description: str | None = Field(default=None, max_length=200)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_url(value)

    @field_validator("events")
    @classmethod
    def _no_repeats(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError("events must not repeat an event type")
        return value


class Webhook(ResponseModel):
    id: str
    url: str
    description: str | None
    events: list[str] | None = Field(description="The event filter; null receives every event.")
    created_at: Timestamp
    updated_at: Timestamp


class WebhookCreated(Webhook):
    secret: str = Field(
        description="The signing secret (`whsec_…`). Shown in this response only: store it now."
    )


class Event(BaseModel):
    """An event as its endpoints receive it (the JSON body of the POST)."""

    id: str
    type: str
    created_at: Timestamp
    data: dict[str, Any]


class DeliveryAttempt(BaseModel):
    attempt: int
    started_at: Timestamp
    finished_at: Timestamp | None
    duration_ms: int | None
    status_code: int | None = Field(description="The endpoint's HTTP status; null if none came.")
    error: str | None
    response_body: str | None = Field(description="The first 1,000 characters of the answer.")


class WebhookDelivery(BaseModel):
    """One event on its way to one endpoint, with every attempt so far."""

    id: str
    event: Event
    status: DeliveryStatus
    attempts: list[DeliveryAttempt]
    next_attempt_at: Timestamp | None
    last_status_code: int | None
    last_error: str | None
    created_at: Timestamp
    delivered_at: Timestamp | None
