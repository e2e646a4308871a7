from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from outdial.models.base import Base, UTCDateTime, utcnow


class IdempotencyKey(Base):
    """A create request sent with an `Idempotency-Key`, and the response it got.

    The row is written in the transaction that creates the resource, so a key is either
    unknown or tied to what its first request created. `response` is empty while that
    request is still running (a single call is being dialed). Rows expire after
    `idempotency_key_hours`; an expired key counts as never seen.
    """

    __tablename__ = "idempotency_keys"

    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    # SHA-256 of the method, the path and the body: the same key with another request is a 409.
    fingerprint: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int | None] = mapped_column(Integer)
    # The JSON exactly as first sent, so a replay is byte for byte the same.
    response: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
