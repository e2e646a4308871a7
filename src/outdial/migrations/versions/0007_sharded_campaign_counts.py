"""campaign_counts.shard: a campaign's counters spread over one row per connection

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27 00:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("campaign_counts") as batch:
        batch.add_column(
            sa.Column("shard", sa.SmallInteger(), nullable=False, server_default=sa.text("0"))
        )
        batch.drop_constraint("pk_campaign_counts", type_="primary")
        batch.create_primary_key("pk_campaign_counts", ["campaign_id", "name", "shard"])
    with op.batch_alter_table("campaign_counts") as batch:
        batch.alter_column("shard", server_default=None)


def downgrade() -> None:
    # Fold every key's shards into shard 0, then back to one row per (campaign, key).
    op.execute(
        "INSERT INTO campaign_counts (campaign_id, name, shard, value) "
        "SELECT DISTINCT campaign_id, name, 0, 0 FROM campaign_counts AS c WHERE NOT EXISTS "
        "(SELECT 1 FROM campaign_counts AS z "
        "WHERE z.campaign_id = c.campaign_id AND z.name = c.name AND z.shard = 0)"
    )
    op.execute(
        "UPDATE campaign_counts SET value = (SELECT SUM(c.value) FROM campaign_counts AS c "
        "WHERE c.campaign_id = campaign_counts.campaign_id AND c.name = campaign_counts.name) "
        "WHERE shard = 0"
    )
    op.execute("DELETE FROM campaign_counts WHERE shard <> 0")
    with op.batch_alter_table("campaign_counts") as batch:
        batch.drop_constraint("pk_campaign_counts", type_="primary")
        batch.create_primary_key("pk_campaign_counts", ["campaign_id", "name"])
        batch.drop_column("shard")
