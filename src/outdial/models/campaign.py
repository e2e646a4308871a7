from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from outdial.models.base import Base, BigId, JSONType, UTCDateTime, utcnow


class Campaign(Base):
    __tablename__ = "campaigns"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    assistant_id: Mapped[str] = mapped_column(ForeignKey("assistants.id"))
    phone_number_id: Mapped[str] = mapped_column(ForeignKey("phone_numbers.id"))
    channel: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default="draft", index=True)
    ended_reason: Mapped[str | None] = mapped_column(String(40))
    status_reason: Mapped[str | None] = mapped_column(Text)
    max_concurrency: Mapped[int] = mapped_column(Integer, default=5)
    retry_policy: Mapped[dict[str, Any]] = mapped_column(JSONType)
    speech_settings: Mapped[dict[str, Any]] = mapped_column(JSONType)
    calling_hours: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    schedule_start_time: Mapped[datetime | None] = mapped_column(UTCDateTime)
    schedule_end_time: Mapped[datetime | None] = mapped_column(UTCDateTime)
    campaign_context: Mapped[str | None] = mapped_column(Text)
    opening_message_template: Mapped[str | None] = mapped_column(Text)
    returning_message_template: Mapped[str | None] = mapped_column(Text)
    voicemail_message_template: Mapped[str | None] = mapped_column(Text)
    use_returning_greeting: Mapped[bool] = mapped_column(Boolean, default=False)
    use_short_term_summaries: Mapped[bool] = mapped_column(Boolean, default=False)
    short_term_summaries_limit: Mapped[int] = mapped_column(Integer, default=3)
    machine_detection_timeout_seconds: Mapped[int | None] = mapped_column(Integer)
    recipient_list_id: Mapped[str | None] = mapped_column(
        ForeignKey("recipient_lists.id", ondelete="SET NULL"), index=True
    )
    last_position: Mapped[int] = mapped_column(Integer, default=0)
    # The auto-pause breaker: dials the provider refused in a row, and the last refusal.
    rejected_in_a_row: Mapped[int] = mapped_column(Integer, default=0)
    last_rejection: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resumed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


PENDING = "status = 'pending'"


class CampaignRecipient(Base):
    """A person in a started (or draft) campaign; each dial of them is a `Call`."""

    __tablename__ = "campaign_recipients"
    __table_args__ = (
        Index("uq_campaign_recipients_campaign_position", "campaign_id", "position", unique=True),
        Index("ix_campaign_recipients_campaign_status", "campaign_id", "status", "position"),
        Index("ix_campaign_recipients_due", "campaign_id", "status", "next_attempt_at"),
        Index("ix_campaign_recipients_campaign_number", "campaign_id", "phone_number"),
        # The claim's next recipients, by position. Without it, a plan made while most of a
        # campaign was pending walks the position index past every recipient dialed since.
        Index(
            "ix_campaign_recipients_pending",
            "campaign_id",
            "position",
            postgresql_where=text(PENDING),
            sqlite_where=text(PENDING),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    campaign_id: Mapped[str] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    phone_number: Mapped[str] = mapped_column(String(20))
    recipient_metadata: Mapped[dict[str, Any]] = mapped_column("metadata", JSONType)
    assistant_overrides: Mapped[dict[str, Any]] = mapped_column(JSONType)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    status_reason: Mapped[str | None] = mapped_column(String(200))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_outcome: Mapped[str | None] = mapped_column(String(20))
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_call_id: Mapped[str | None] = mapped_column(String(40))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class CampaignCount(Base):
    """Transactional counters behind `counts`, updated by delta; a key's value is the sum of
    its rows. Each database connection writes its own shard (PostgreSQL: the backend's pid
    modulo `COUNT_SHARDS`), so concurrent attempts of one campaign do not queue on one row's
    lock until commit; SQLite has one writer and one shard (0)."""

    __tablename__ = "campaign_counts"

    campaign_id: Mapped[str] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(20), primary_key=True)
    shard: Mapped[int] = mapped_column(SmallInteger, primary_key=True, default=0)
    value: Mapped[int] = mapped_column(BigInteger, default=0)
