"""The Alembic migrations build exactly the schema the models describe, on both backends;
and a downgrade keeps what the data says."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from fastapi import FastAPI
from sqlalchemy import insert, inspect, select, text
from tests.dialing import Service
from tests.support import numbers

from outdial.campaign import repository as campaign_repository
from outdial.database import alembic_config, write_transaction
from outdial.models import Base, CampaignCount


def _differences(connection: Any) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def test_migrated_schema_matches_the_models(app: FastAPI) -> None:
    async with app.state.engine.connect() as connection:
        assert await connection.run_sync(_differences) == []


async def test_every_model_table_exists(app: FastAPI) -> None:
    async with app.state.engine.connect() as connection:
        tables = await connection.run_sync(lambda c: set(inspect(c).get_table_names()))
    assert set(Base.metadata.tables) <= tables


async def test_downgrading_the_counter_shards_folds_them_into_one_row_per_key(
    service: Service,
) -> None:
    """Migration 0007's downgrade: every key's shards summed into one row, nothing lost."""
    tenant = await service.tenant()
    campaign = await tenant.campaign(recipients=[{"phone_number": n} for n in numbers(3)])
    async with write_transaction(service.app.state.sessionmaker) as session:
        # The campaign's creation wrote its counts in its connection's shard: spread the
        # extra rows over shards it left free, so none collides with them.
        taken = set(
            (
                await session.execute(
                    select(CampaignCount.shard).where(CampaignCount.campaign_id == campaign["id"])
                )
            ).scalars()
        )
        free = [shard for shard in range(campaign_repository.COUNT_SHARDS) if shard not in taken]
        spread = [
            ("pending", free[0], 2),
            ("pending", free[1], -1),
            ("completed", free[2], 4),
            ("completed", free[3], -4),
        ]
        await session.execute(
            insert(CampaignCount),
            [
                {"campaign_id": campaign["id"], "name": name, "shard": shard, "value": value}
                for name, shard, value in spread
            ],
        )
        expected = (await campaign_repository.read_counts(session, [campaign["id"]]))[
            campaign["id"]
        ]
    assert expected["pending"] == 4 and expected["completed"] == 0  # 3 + 2 - 1, 4 - 4
    url = service.app.state.settings.resolved_database_url
    await asyncio.to_thread(command.downgrade, alembic_config(url), "0006")
    try:
        async with service.app.state.engine.connect() as connection:
            rows = (
                await connection.execute(
                    text("SELECT name, value FROM campaign_counts WHERE campaign_id = :id"),
                    {"id": campaign["id"]},
                )
            ).all()
        names = [name for name, _ in rows]
        assert len(names) == len(set(names))  # one row per key
        assert {name: value for name, value in rows if value} == {
            name: value for name, value in expected.items() if value
        }
    finally:
        await asyncio.to_thread(command.upgrade, alembic_config(url), "head")
