from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from outdial.models.base import Base, JSONType, UTCDateTime, utcnow

LIVE_STATUSES = ("queued", "initiated", "ringing", "in_progress")
LIVE_CONDITION = "status IN ('queued', 'initiated', 'ringing', 'in_progress')"


class Call(Base):
    """One dial (attempt) of a recipient, or an ad-hoc call from `POST /calls`."""

    __tablename__ = "calls"
    __table_args__ = (
        Index("ix_calls_user_created", "user_id", "created_at"),
        Index("ix_calls_campaign_created", "campaign_id", "created_at"),
        # The per-number daily cap counts an account's recent calls to a set of numbers.
        Index("ix_calls_user_number_created", "user_id", "to_number", "created_at"),
        # One live call per person per account, whichever campaign or worker placed it.
        Index(
            "uq_calls_live_number",
            "user_id",
            "to_number",
            unique=True,
            postgresql_where=text(LIVE_CONDITION),
            sqlite_where=text(LIVE_CONDITION),
        ),
        Index(
            "ix_calls_live_lease",
            "lease_expires_at",
            postgresql_where=text(LIVE_CONDITION),
            sqlite_where=text(LIVE_CONDITION),
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    campaign_id: Mapped[str | None] = mapped_column(ForeignKey("campaigns.id", ondelete="SET NULL"))
    recipient_id: Mapped[int | None] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"),
        ForeignKey("campaign_recipients.id", ondelete="SET NULL"),
    )
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    phone_number_id: Mapped[str | None] = mapped_column(String(40))
    assistant_id: Mapped[str | None] = mapped_column(String(40))
    provider: Mapped[str] = mapped_column(String(20))
    direction: Mapped[str] = mapped_column(String(20), default="outbound")
    to_number: Mapped[str] = mapped_column(String(20))
    from_number: Mapped[str | None] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default="queued", index=True)
    answered_by: Mapped[str | None] = mapped_column(String(20))
    provider_call_sid: Mapped[str | None] = mapped_column(String(64))
    ended_reason: Mapped[str | None] = mapped_column(String(40))
    # What ended the conversation (the voice runtime's reason: customer_hung_up, …), kept for
    # the provider's final callback whichever comes first; see dialer/store.finish_call.
    talk_ended_reason: Mapped[str | None] = mapped_column(String(40))
    label: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    duration_seconds: Mapped[int | None] = mapped_column(Integer)
    summary: Mapped[str | None] = mapped_column(Text)
    transcript: Mapped[list[Any] | None] = mapped_column(JSONType)
    user_messages: Mapped[int | None] = mapped_column(Integer)
    agent_messages: Mapped[int | None] = mapped_column(Integer)
    assistant_config: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    latency_metrics: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    per_turn_latency: Mapped[list[Any] | None] = mapped_column(JSONType)
    recording_url: Mapped[str | None] = mapped_column(Text)
    stereo_recording_url: Mapped[str | None] = mapped_column(Text)
    recording_mp3_url: Mapped[str | None] = mapped_column(Text)
    stereo_recording_mp3_url: Mapped[str | None] = mapped_column(Text)
    # Dialer bookkeeping (never shown): the per-call secret in callback URLs, as SHA-256;
    # the worker holding the call until the provider has it; when the dial request left.
    secret_hash: Mapped[str | None] = mapped_column(String(64))
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    dial_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_event_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    hangup_requested: Mapped[bool] = mapped_column(Boolean, default=False)
