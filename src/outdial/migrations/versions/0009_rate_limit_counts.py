"""rate_limit_counts: requests per API key and minute, shared by every API process

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28 00:35:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rate_limit_counts",
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("minute", sa.Integer(), nullable=False),
        sa.Column("used", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key_id", "minute", name=op.f("pk_rate_limit_counts")),
    )


def downgrade() -> None:
    op.drop_table("rate_limit_counts")
