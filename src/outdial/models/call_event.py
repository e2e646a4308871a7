from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from outdial.models.base import Base, BigId, JSONType, UTCDateTime, utcnow

# The event that records a call's one media connection (voice/repository.claim_media): a
# call with it talked, or is talking, to its assistant.
MEDIA_CLAIM_KEY = "media:connected"


class CallEvent(Base):
    """Every provider callback, recorded once: the unique key turns duplicates into no-ops."""

    __tablename__ = "call_events"
    __table_args__ = (UniqueConstraint("call_id", "dedupe_key", name="uq_call_events_call_key"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    call_id: Mapped[str] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"))
    dedupe_key: Mapped[str] = mapped_column(String(80))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
