from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, ForeignKey, Index, LargeBinary, String, text
from sqlalchemy.orm import Mapped, mapped_column

from outdial.models.base import Base, UTCDateTime, utcnow


class PhoneNumber(Base):
    """A caller number on a provider; `credentials` is a Fernet token, never plain text."""

    __tablename__ = "phone_numbers"
    __table_args__ = (
        Index(
            "uq_phone_numbers_user_number_live",
            "user_id",
            "phone_number",
            unique=True,
            postgresql_where=text("deleted_at IS NULL"),
            sqlite_where=text("deleted_at IS NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(20))
    phone_number: Mapped[str] = mapped_column(String(20))
    label: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), default="active")
    assistant_id: Mapped[str | None] = mapped_column(String(40))
    credentials: Mapped[bytes] = mapped_column(LargeBinary)
    calls_per_second: Mapped[float] = mapped_column(Float, default=1.0)
    # Pacing shared by every worker: the earliest moment this number may dial again.
    next_dial_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
