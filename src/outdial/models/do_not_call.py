from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from outdial.models.base import Base, UTCDateTime, utcnow


class DoNotCallEntry(Base):
    """A number an account must never dial; the key (user, number) makes adding idempotent."""

    __tablename__ = "do_not_call_entries"
    __table_args__ = (Index("ix_do_not_call_entries_user_created", "user_id", "created_at"),)

    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    phone_number: Mapped[str] = mapped_column(String(20), primary_key=True)
    reason: Mapped[str | None] = mapped_column(String(500))
    # How the number got here: `api`, `csv` or `opt_out` (during a call, see `call_id`).
    source: Mapped[str] = mapped_column(String(20), server_default="api")
    call_id: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
