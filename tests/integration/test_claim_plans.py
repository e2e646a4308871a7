"""The claim's query for the next pending recipients stays cheap as a campaign progresses,
whatever PostgreSQL's statistics last saw."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import text
from tests.support import Tenant

from outdial.database import write_transaction
from outdial.dialer.claim import next_pending
from outdial.models import utcnow

RECIPIENTS = 6000


def removed_by_filter(plan: dict[str, Any]) -> int:
    """Rows a plan's nodes read and threw away, all nodes together."""
    own = int(plan.get("Rows Removed by Filter", 0))
    return own + sum(removed_by_filter(child) for child in plan.get("Plans", []))


async def test_the_next_pending_are_found_without_passing_the_dialed(
    app: FastAPI, tenant: Tenant, backend: str
) -> None:
    """Statistics gathered while the campaign was all pending, then half of it dialed: the
    planner, expecting pending recipients everywhere, would walk the position index and
    pass every dialed one on each claim (thousands of rows); the partial index of the
    pending finds the next ones directly."""
    if backend == "sqlite":
        pytest.skip("PostgreSQL's planner and statistics")
    campaign = await tenant.campaign(recipients=[{"phone_number": "+14155550100"}])
    params = {"campaign": campaign["id"], "count": RECIPIENTS}
    async with write_transaction(app.state.sessionmaker) as session:
        await session.execute(
            text(
                "INSERT INTO campaign_recipients (campaign_id, position, phone_number, metadata, "
                "assistant_overrides, status, attempts, updated_at) "
                "SELECT :campaign, i, '+1628' || lpad(i::text, 7, '0'), '{}', '{}', "
                "'pending', 0, now() FROM generate_series(10, :count + 9) AS i"
            ),
            params,
        )
        await session.execute(text("ANALYZE campaign_recipients"))
        await session.execute(
            text(
                "UPDATE campaign_recipients SET status = 'completed' "
                "WHERE campaign_id = :campaign AND position < :count / 2"
            ),
            params,
        )
    query = next_pending(campaign["id"], utcnow(), 5)
    async with app.state.sessionmaker() as session:
        dialect = session.get_bind().dialect
        statement = str(query.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
        explain = text(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}")
        explained = (await session.execute(explain)).scalar_one()
        found = [recipient.position for recipient in (await session.scalars(query)).all()]
        await session.rollback()
    plan = (json.loads(explained) if isinstance(explained, str) else explained)[0]["Plan"]
    assert found == list(range(RECIPIENTS // 2, RECIPIENTS // 2 + 5))
    assert removed_by_filter(plan) < 50, json.dumps(plan, indent=1)
