"""campaigns.resumed_at: when the campaign was last resumed, so a late report of a call placed
before it cannot pause the campaign again

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-08 00:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Plain ALTER TABLE on both backends (SQLite drops a column itself since 3.35): a batch
# operation would copy `campaigns` on SQLite, and dropping the old table with foreign keys
# on deletes the rows of every table that cascades from it.


def upgrade() -> None:
    op.add_column("campaigns", sa.Column("resumed_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("campaigns", "resumed_at")
