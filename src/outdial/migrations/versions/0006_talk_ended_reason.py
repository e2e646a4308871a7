"""calls.talk_ended_reason: what ended the conversation, for the call's final callback

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 22:05:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.add_column(sa.Column("talk_ended_reason", sa.String(length=40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.drop_column("talk_ended_reason")
