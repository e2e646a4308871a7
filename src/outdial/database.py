"""Engines, sessions and migrations for SQLite (embedded) and PostgreSQL (scale)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import CursorResult, Executable, Row, event
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session, SessionTransaction
from starlette.requests import Request

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def create_engine(url: str, *, pool_size: int = 20) -> AsyncEngine:
    """Create the async engine; SQLite gets WAL, foreign keys and a busy timeout."""
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        return engine
    # No pre-ping: it costs a round trip on every checkout. A connection found dead is
    # invalidated with the whole pool; the API answers that request 503, workers retry.
    # The pool keeps what a busy process uses at once: a connection beyond it is opened for
    # one checkout and closed after it (2 % of the API's CPU at saturation with 10 kept).
    overflow = max(1, pool_size // 2)
    return create_async_engine(url, pool_size=pool_size, max_overflow=overflow)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # SQLAlchemy, not the sqlite3 module, decides when a transaction begins (see _sqlite_begin).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin(connection: Any) -> None:
    """Writers take SQLite's write lock up front (BEGIN IMMEDIATE).

    A transaction that reads and then writes would otherwise fail at once with "database is
    locked" when another writer got there between its read and its write; waiting for the
    lock at BEGIN lets busy_timeout do its job. Readers keep a plain BEGIN.
    """
    immediate = connection.get_execution_options().get(WRITE_OPTION)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


WRITE_OPTION = "outdial_writes"


_writers: dict[int, asyncio.Lock] = {}


async def begin_writing(session: AsyncSession) -> None:
    """Declare, before the first statement, that this session's transaction will write.

    On SQLite, writers of one process also queue on an asyncio lock until their transaction
    ends: a fair FIFO instead of SQLite's busy handler, which sleeps and retries and so
    serves many concurrent writers (callbacks, the dialer) slowly.
    """
    bind = session.bind
    if bind is not None and bind.dialect.name == "sqlite":
        lock = _writers.setdefault(id(bind.sync_engine), asyncio.Lock())
        await lock.acquire()
        session.sync_session.info["write_lock"] = lock
    await session.connection(execution_options={WRITE_OPTION: True})


@event.listens_for(Session, "after_transaction_end")
def _release_writer(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        lock = session.info.pop("write_lock", None)
        if lock is not None:
            lock.release()


def dialect_insert(session: AsyncSession | str, table: Any) -> Any:
    """`INSERT` with the dialect's `ON CONFLICT` clauses (PostgreSQL and SQLite share them).

    `session` may be the dialect's name, for a statement built once per dialect."""
    name = session if isinstance(session, str) else session.get_bind().dialect.name
    return pg_insert(table) if name == "postgresql" else sqlite_insert(table)


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def _upgrade(url: str) -> None:
    command.upgrade(alembic_config(url), "head")


async def migrate(url: str) -> None:
    """Bring the schema to the newest revision (runs Alembic in its own thread and loop)."""
    if url.startswith("sqlite"):
        database = url.split("///", 1)[-1]
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
    await asyncio.to_thread(_upgrade, url)


@asynccontextmanager
async def write_transaction(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """One short write transaction for a worker step or a CLI command; commits on success."""
    async with sessionmaker() as session:
        await begin_writing(session)
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise


@asynccontextmanager
async def _autocommit(session: AsyncSession) -> AsyncIterator[AsyncConnection]:
    yield await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})


async def run(
    session: AsyncSession, statement: Executable, params: Mapping[str, Any] | None = None
) -> CursorResult[Any]:
    """Execute a Core statement on the session's connection, in the session's transaction.

    For the statements every call runs: built once with bind parameters (a cached builder),
    so SQLAlchemy neither rebuilds them nor computes their cache key again, and run on the
    connection, which skips the session's per-statement ORM work (docs/decisions.md,
    "Statements built once").
    """
    connection = await session.connection()
    return await connection.execute(statement, params)


async def write_alone(
    sessionmaker: async_sessionmaker[AsyncSession],
    statement: Executable,
    params: Mapping[str, Any] | None = None,
) -> int:
    """One write statement that is its own transaction; the number of rows it changed.

    On PostgreSQL a single round trip in autocommit mode (no BEGIN, no COMMIT); on SQLite
    through the writer queue like every other write.
    """
    async with sessionmaker() as session:
        if session.get_bind().dialect.name == "postgresql":
            async with _autocommit(session) as connection:
                return int((await connection.execute(statement, params)).rowcount)
        await begin_writing(session)
        try:
            changed = int((await run(session, statement, params)).rowcount)
            await session.commit()
        except BaseException:
            await session.rollback()
            raise
        return changed


async def write_alone_first(
    sessionmaker: async_sessionmaker[AsyncSession],
    statement: Executable,
    params: Mapping[str, Any] | None = None,
) -> Row[Any] | None:
    """`write_alone` for a statement that returns rows: its first row (PostgreSQL only)."""
    async with sessionmaker() as session, _autocommit(session) as connection:
        return (await connection.execute(statement, params)).first()


async def read_alone(
    sessionmaker: async_sessionmaker[AsyncSession],
    statement: Executable,
    params: Mapping[str, Any] | None = None,
) -> list[Row[Any]]:
    """The rows of one query, read outside any transaction (one round trip on PostgreSQL)."""
    async with sessionmaker() as session:
        if session.get_bind().dialect.name == "postgresql":
            async with _autocommit(session) as connection:
                return list((await connection.execute(statement, params)).all())
        return list((await run(session, statement, params)).all())


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """Request-scoped session: the edge owns the transaction and commits on success."""
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with sessionmaker() as session:
        try:
            if request.method not in ("GET", "HEAD", "OPTIONS"):
                await begin_writing(session)
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise
