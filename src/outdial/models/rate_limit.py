from __future__ import annotations

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from outdial.models.base import Base


class RateLimitCount(Base):
    """The requests one API key made in one clock minute, on PostgreSQL: every API process
    counts here (`auth.rate_limit.SharedRateLimiter`). Rows older than the minute before
    the current one are deleted as each process enters a new minute."""

    __tablename__ = "rate_limit_counts"

    key_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    minute: Mapped[int] = mapped_column(Integer, primary_key=True)  # Unix time // 60
    used: Mapped[int] = mapped_column(Integer)
