"""A new database's busy tables get statistics as soon as they have rows, so the plans
PostgreSQL settled on while they were empty are made again (`dialer.statistics`)."""

from __future__ import annotations

import json
import secrets
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from fastapi import FastAPI
from sqlalchemy.engine import make_url
from tests.integration.test_claim_plans import removed_by_filter
from tests.support import admin_url_database, create_database, drop_database

from outdial.database import create_engine, create_sessionmaker, migrate
from outdial.dialer.statistics import FirstStatistics
from outdial.do_not_call.repository import blocked_params, blocked_query
from outdial.models import utcnow

CALLS = 3000
LISTED = 2000


def literal(value: Any) -> str:
    """A parameter's value as SQL, for `EXECUTE` of a prepared statement."""
    if isinstance(value, list):
        return f"ARRAY[{', '.join(literal(each) for each in value)}]::varchar[]"
    if isinstance(value, datetime):
        return f"'{value.isoformat()}'::timestamptz"
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


async def test_the_first_statistics_replace_the_plans_made_while_empty(
    app: FastAPI, database_url: str, backend: str
) -> None:
    """The do-not-call screen, planned while a new database was empty, filters every call
    of the account's day (thousands of rows a claim); once the dialer has gathered the first
    statistics of the tables it reads, it looks its numbers up. Each table once; a locked
    one at a later round."""
    if backend == "sqlite":  # no cached plans to replace
        statistics = FirstStatistics(app.state.sessionmaker)
        assert statistics.waiting == set()
        assert await statistics.gather() == []
        return
    name = f"outdial_new_{secrets.token_hex(4)}"
    await create_database(database_url, name)
    url = admin_url_database(database_url, name)
    engine = create_engine(url, pool_size=2)
    connection = None
    try:
        await migrate(url)
        dsn = make_url(url).set(drivername="postgresql").render_as_string(False)
        connection = await asyncpg.connect(dsn)
        # The test's own moment decides when these tables are analyzed, not autovacuum's
        # next visit to the new database.
        for table in ("calls", "do_not_call_entries"):
            await connection.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = off)")
        statement = blocked_query("postgresql", capped=True, live=True)
        compiled = statement.compile(dialect=engine.dialect)
        now = utcnow()
        numbers = ["+16285550007", "+14155550007", "+12125550100"]  # listed, called, neither
        params = blocked_params("usr_new", numbers, now, 1)
        values = {**compiled.params, **params}
        args = ", ".join(literal(values[name]) for name in compiled.positiontup or ())
        # What a pooled connection does after its first executions: keep the generic plan.
        await connection.execute("SET plan_cache_mode = force_generic_plan")
        await connection.execute(f"PREPARE screen AS {compiled}")
        await connection.execute(f"EXPLAIN EXECUTE screen({args})")  # planned while empty

        await connection.execute(
            "INSERT INTO users (id, name, created_at) VALUES ('usr_new', 'new', now())"
        )
        await connection.execute(
            "INSERT INTO calls (id, user_id, provider, direction, to_number, status, attempt, "
            "created_at, updated_at, dial_started_at) "
            "SELECT 'call_' || i, 'usr_new', 'twilio', 'outbound', "
            "'+1415555' || lpad(i::text, 4, '0'), 'completed', 1, $1, $1, $1 "
            "FROM generate_series(1, $2::int) AS i",
            now - timedelta(hours=1),
            CALLS,
        )
        await connection.execute(
            "INSERT INTO do_not_call_entries (user_id, phone_number, source, created_at) "
            "SELECT 'usr_new', '+1628555' || lpad(i::text, 4, '0'), 'api', now() "
            "FROM generate_series(1, $1::int) AS i",
            LISTED,
        )
        # (A backend reports its changes when idle, at most once a second: report them now.)
        await connection.execute("SELECT pg_stat_force_next_flush()")

        async def screen() -> tuple[list[tuple[str, str]], int]:
            rows = await connection.fetch(f"EXECUTE screen({args})")
            explained = await connection.fetchval(
                f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE screen({args})"
            )
            plan = json.loads(explained)[0]["Plan"]
            return sorted((row[0], row[1]) for row in rows), removed_by_filter(plan)

        blocked = [("+14155550007", "daily_cap"), ("+16285550007", "dnc")]
        found, passed = await screen()
        assert found == blocked
        assert passed > CALLS  # the plan made while empty, reproduced

        statistics = FirstStatistics(create_sessionmaker(engine))
        # A table locked by a vacuum or a schema change is not waited for, but tried again.
        locker = await asyncpg.connect(dsn)
        try:
            async with locker.transaction():
                await locker.execute("LOCK do_not_call_entries IN SHARE UPDATE EXCLUSIVE MODE")
                assert await statistics.gather() == ["calls"]
        finally:
            await locker.close()
        assert "do_not_call_entries" in statistics.waiting
        assert await statistics.gather() == ["do_not_call_entries"]
        found, passed = await screen()
        assert found == blocked
        assert passed < 50, passed

        # Tables without enough changes wait; analyzed ones, by it or by anything else
        # (autovacuum), are not looked at again.
        assert {"campaign_counts", "call_events"} <= statistics.waiting
        assert not statistics.waiting & {"calls", "do_not_call_entries"}
        await connection.execute("ANALYZE campaign_counts")
        await connection.execute("SELECT pg_stat_force_next_flush()")
        assert await statistics.gather() == []
        assert "campaign_counts" not in statistics.waiting
        assert "call_events" in statistics.waiting  # (no rows: fewer than CHANGES)
    finally:
        if connection is not None:
            await connection.close()
        await engine.dispose()
        await drop_database(database_url, name)
