from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, ForeignKey, LargeBinary, Text
from sqlalchemy.orm import Mapped, mapped_column

from outdial.models.base import Base, UTCDateTime, utcnow


class PreDialCheck(Base):
    """The account's URL asked before each campaign dial; `secret` signs the question (sealed)."""

    __tablename__ = "pre_dial_checks"

    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    url: Mapped[str] = mapped_column(Text)
    timeout_seconds: Mapped[float] = mapped_column(Float, server_default="3")
    secret: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
