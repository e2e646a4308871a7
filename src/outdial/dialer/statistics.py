"""A new database's first statistics, gathered as soon as its busy tables have rows.

PostgreSQL settles on a generic plan for a prepared statement within its first executions
and keeps it until the statistics of a table it reads change. On a new database those first
plans are made while the tables are empty and have no statistics, and some stay poor as the
tables fill: the do-not-call screen of each claim filters the account's calls of the day
instead of looking its numbers up, the dial gate and the callbacks find their call through
the status index. Autovacuum's first `ANALYZE` of a table replans them, but only after its
next round (a minute by default) and only once a table has changed enough. The dialer does
not wait: each busy table is analyzed once, as soon as it has `CHANGES` changed rows, and
never again by this module (autovacuum keeps the statistics from then on). A table it may
not analyze (not its owner) is skipped by PostgreSQL with a warning and left to autovacuum
too; one locked by a vacuum or a schema change is tried again at the next round. SQLite
keeps no such plans: nothing to do there. docs/decisions.md, "A new database's first
statistics".
"""

from __future__ import annotations

import logging

from sqlalchemy import ARRAY, String, bindparam, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from outdial.database import dialect_of, write_transaction

log = logging.getLogger("outdial.dialer")

# The tables every attempt writes or reads by an index the planner has to choose.
BUSY_TABLES = (
    "calls",
    "call_events",
    "campaign_recipients",
    "campaign_counts",
    "do_not_call_entries",
)
CHANGES = 100  # changed rows before a table's first statistics tell the planner something
LOCK_WAIT = "2s"  # an ANALYZE waits no longer for a table's lock (tried again next round)

_STATE = text(
    "SELECT relname AS name, "
    "last_analyze IS NOT NULL OR last_autoanalyze IS NOT NULL AS analyzed, "
    "n_mod_since_analyze AS changes "
    "FROM pg_stat_user_tables WHERE schemaname = current_schema() AND relname = ANY(:tables)"
).bindparams(bindparam("tables", type_=ARRAY(String)))


class FirstStatistics:
    """Analyzes each busy table of a new PostgreSQL database once it has rows."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.sessionmaker = sessionmaker
        postgres = dialect_of(sessionmaker) == "postgresql"
        self.waiting = set(BUSY_TABLES) if postgres else set()

    async def gather(self) -> list[str]:
        """`ANALYZE` each waiting table that has changed enough; the tables analyzed now.

        A table with statistics already (from autovacuum, an earlier run, another worker) is
        no longer waited for; once none is, this costs nothing."""
        if not self.waiting:
            return []
        async with self.sessionmaker() as session:
            rows = (await session.execute(_STATE, {"tables": sorted(self.waiting)})).all()
        due = []
        for name, analyzed, changes in rows:
            if analyzed:
                self.waiting.discard(name)
            elif changes >= CHANGES:
                due.append(name)
        analyzed = []
        for name in due:
            try:
                async with write_transaction(self.sessionmaker) as session:
                    # A table being vacuumed or altered: give up for now rather than wait.
                    await session.execute(text(f"SET LOCAL lock_timeout = '{LOCK_WAIT}'"))
                    await session.execute(text(f'ANALYZE "{name}"'))
            except DBAPIError as exc:
                log.warning("first statistics of %s not gathered, trying again: %s", name, exc)
                continue
            self.waiting.discard(name)
            analyzed.append(name)
            log.info("first statistics of %s gathered", name)
        return analyzed
