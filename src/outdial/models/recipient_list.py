from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from outdial.models.base import Base, BigId, JSONType, UTCDateTime, utcnow


class RecipientList(Base):
    __tablename__ = "recipient_lists"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str | None] = mapped_column(String(200))
    row_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class RecipientListRow(Base):
    """One person on a list. Positions are dense (1..row_count), so paging is a range scan."""

    __tablename__ = "recipient_list_rows"
    __table_args__ = (
        UniqueConstraint("list_id", "phone_number", name="uq_recipient_list_rows_list_number"),
        Index("uq_recipient_list_rows_list_position", "list_id", "position", unique=True),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    list_id: Mapped[str] = mapped_column(ForeignKey("recipient_lists.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    phone_number: Mapped[str] = mapped_column(String(20))
    row_metadata: Mapped[dict[str, Any]] = mapped_column("metadata", JSONType)
