"""Call schemas: the upstream call object plus the links to campaign and recipient."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from outdial.schemas import RequestModel, ResponseModel, Timestamp

CallStatus = Literal[
    "queued",
    "initiated",
    "ringing",
    "in_progress",
    "completed",
    "busy",
    "no_answer",
    "failed",
    "canceled",
]


class Call(ResponseModel):
    id: str
    to_number: str
    provider: str
    status: str
    phone_number_id: str | None
    assistant_id: str | None
    from_number: str | None
    provider_call_sid: str | None
    direction: str | None
    campaign_id: str | None
    recipient_id: str | None
    attempt: int
    answered_by: str | None
    label: str | None
    created_at: Timestamp
    started_at: Timestamp | None
    answered_at: Timestamp | None
    ended_at: Timestamp | None
    ended_reason: str | None
    duration_seconds: int | None
    timestamp: Timestamp | None
    summary: str | None
    user_messages: int | None
    agent_messages: int | None
    recording_url: str | None
    stereo_recording_url: str | None
    recording_mp3_url: str | None
    stereo_recording_mp3_url: str | None
    latency_metrics: dict[str, Any] | None
    per_turn_latency: list[Any] | None
    assistant_config: dict[str, Any] | None
    transcript: list[Any] | None


class CallCreate(RequestModel):
    """A single call, placed through the same engine as campaign calls."""

    phone_number_id: str = Field(max_length=64, description="The caller number to call from.")
    to_number: str = Field(min_length=1, max_length=40, description="E.164 destination.")
    assistant_id: str | None = Field(
        default=None, max_length=64, description="Default: the phone number's assistant."
    )
    label: str | None = Field(default=None, max_length=200)


class CallUpdate(RequestModel):
    label: str | None = Field(default=None, max_length=200)
    recording_enabled: bool | None = None
    action: Literal["hangup", "transfer"] | None = None
    to: str | None = Field(default=None, max_length=40)
    mode: Literal["warm", "cold"] | None = None
