"""Engines, sessions and migrations for SQLite (embedded) and PostgreSQL (scale)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import asyncpg
from alembic import command
from alembic.config import Config
from sqlalchemy import ColumnElement, CursorResult, Executable, Row, event, literal_column
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError, IntegrityError, InvalidRequestError, StatementError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session, SessionTransaction
from sqlalchemy.util import greenlet_spawn
from starlette.requests import Request

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def create_engine(url: str, *, pool_size: int = 20, durable: bool = True) -> AsyncEngine:
    """Create the async engine; SQLite gets WAL, foreign keys and a busy timeout.

    `durable=False` (PostgreSQL): its commits do not wait for the WAL to reach the disk
    (`synchronous_commit = off`), for writes whose last moment a crash may lose."""
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        return engine
    # No pre-ping: it costs a round trip on every checkout. A connection found dead is
    # invalidated with the whole pool; the API answers that request 503, workers retry.
    # The pool keeps what a busy process uses at once: a connection beyond it is opened for
    # one checkout and closed after it (2 % of the API's CPU at saturation with 10 kept).
    settings = {} if durable else {"server_settings": {"synchronous_commit": "off"}}
    return create_async_engine(
        url, pool_size=pool_size, max_overflow=pool_overflow(pool_size), connect_args=settings
    )


def pool_overflow(pool_size: int) -> int:
    """The connections a PostgreSQL pool of `pool_size` opens beyond it, each for one
    checkout."""
    return max(1, pool_size // 2)


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


def among(column: Any, values: Iterable[str]) -> ColumnElement[bool]:
    """`column IN ('a', 'b')` with constant values written into the SQL. A plain `in_`
    sends its list as parameters that SQLAlchemy renders into the statement again at every
    execution; this one is compiled once with the statement."""
    words = list(values)
    assert all(word.replace("_", "").isalnum() for word in words), words
    return cast(ColumnElement[bool], column.in_([literal_column(f"'{word}'") for word in words]))


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
    session: AsyncSession | PlainTransaction,
    statement: Executable,
    params: Mapping[str, Any] | None = None,
) -> CursorResult[Any]:
    """Execute a Core statement on the session's connection, in the session's transaction.

    For the statements every call runs: built once with bind parameters (a cached builder),
    so SQLAlchemy neither rebuilds them nor computes their cache key again, and run on the
    connection, which skips the session's per-statement ORM work (docs/decisions.md,
    "Statements built once"). In a `PlainTransaction`, on its asyncpg connection.
    """
    if isinstance(session, PlainTransaction):
        return cast(CursorResult[Any], await session.execute(statement, params))
    connection = await session.connection()
    return await connection.execute(statement, params)


async def write_alone(
    sessionmaker: async_sessionmaker[AsyncSession],
    statement: Executable,
    params: Mapping[str, Any] | None = None,
) -> int:
    """One write statement that is its own transaction; the number of rows it changed.

    On PostgreSQL a single round trip in autocommit mode (no BEGIN, no COMMIT, see `_plain`);
    on SQLite through the writer queue like every other write.
    """
    if dialect_of(sessionmaker) == "postgresql":
        return (await _plain(sessionmaker, statement, params, rows=False))[1]
    async with write_transaction(sessionmaker) as session:
        return int(cast(Any, await run(session, statement, params)).rowcount)


async def write_alone_first(
    sessionmaker: async_sessionmaker[AsyncSession],
    statement: Executable,
    params: Mapping[str, Any] | None = None,
) -> PlainRow | None:
    """`write_alone` for a statement that returns rows: its first row."""
    if dialect_of(sessionmaker) == "postgresql":
        rows = (await _plain(sessionmaker, statement, params, rows=True))[0]
        return rows[0] if rows else None
    async with write_transaction(sessionmaker) as session:
        row = (await run(session, statement, params)).first()
    return PlainRow(row._mapping) if row is not None else None


async def read_alone(
    sessionmaker: async_sessionmaker[AsyncSession],
    statement: Executable,
    params: Mapping[str, Any] | None = None,
) -> list[PlainRow] | list[Row[Any]]:
    """The rows of one query, read outside any transaction (one round trip on PostgreSQL)."""
    if dialect_of(sessionmaker) == "postgresql":
        return (await _plain(sessionmaker, statement, params, rows=True))[0]
    async with sessionmaker() as session:
        return list((await run(session, statement, params)).all())


def dialect_of(sessionmaker: async_sessionmaker[AsyncSession]) -> str:
    """The database's dialect name, without opening a session."""
    return str(sessionmaker.kw["bind"].dialect.name)


class PlainRow:
    """A row read by `_plain`: its columns by name, as attributes or through `_mapping`
    (as a SQLAlchemy row offers them)."""

    __slots__ = ("_mapping",)

    def __init__(self, mapping: Mapping[str, Any]) -> None:
        self._mapping = mapping

    def __getattr__(self, name: str) -> Any:
        try:
            return self._mapping[name]
        except KeyError:
            raise AttributeError(name) from None


LOST_CONNECTION = (
    OSError,
    asyncpg.exceptions.PostgresConnectionError,  # SQLSTATE class 08, a closed connection
    asyncpg.exceptions.AdminShutdownError,  # a restart, or the backend terminated
    # The connection's protocol out of step ("cannot switch to state …"), as when the server
    # ended it between two statements: never to be used again.
    asyncpg.exceptions.InternalClientError,
)


@dataclass(frozen=True)
class _Compiled:
    """A statement as asyncpg takes it: SQL, its parameters in order, their converters."""

    sql: str
    names: tuple[str, ...]
    fixed: Mapping[str, Any]  # values the statement carries itself (constants)
    required: frozenset[str]  # parameters the caller must give
    converters: Mapping[str, Callable[[Any], Any]]
    rows: bool  # whether it returns rows (a query, or a write with RETURNING)


@functools.lru_cache(maxsize=1024)  # statements are built once: a few dozen in all
def _compiled(statement: Executable, dialect: Any) -> _Compiled | None:
    """The statement compiled once for asyncpg; None for one that needs SQLAlchemy's
    execution (Python-side column defaults, lists expanded at execution)."""
    compiled = cast(Any, statement).compile(dialect=dialect)
    plain = None
    executed_by_sqlalchemy = (
        compiled.insert_prefetch
        or compiled.update_prefetch
        or compiled.has_out_parameters
        or "POSTCOMPILE" in compiled.string
    )
    if not executed_by_sqlalchemy:
        converters = {}
        for name in compiled.positiontup:
            bind = compiled.binds[name]
            converter = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if converter is not None:
                converters[name] = converter
        required = frozenset(name for name, bind in compiled.binds.items() if bind.required)
        rows = bool(getattr(statement, "is_select", False) or compiled.effective_returning)
        plain = _Compiled(
            compiled.string,
            tuple(compiled.positiontup),
            compiled.params,
            required,
            converters,
            rows,
        )
    return plain


async def _plain(
    sessionmaker: async_sessionmaker[AsyncSession],
    statement: Executable,
    params: Mapping[str, Any] | None,
    *,
    rows: bool,
) -> tuple[list[PlainRow], int]:
    """One statement alone on PostgreSQL, on a pooled connection taken without a session:
    (its rows, the rows it changed).

    The callbacks and the dials run such statements all the time; a session, an
    `AsyncConnection` and SQLAlchemy's execution cost about four times the round trip's own
    CPU (docs/decisions.md, "Statements built once"). The statement is compiled once by
    SQLAlchemy, its parameters converted by their SQLAlchemy types, and it is run in
    autocommit mode by asyncpg. Errors are reported as SQLAlchemy would: a connection that
    broke meanwhile, or was found closed or out of step, is invalidated (`DBAPIError`,
    `connection_invalidated`), a constraint violation is an `IntegrityError`, anything else
    from the database a `DBAPIError`.
    """
    engine = cast(AsyncEngine, sessionmaker.kw["bind"])
    compiled = _compiled(statement, engine.dialect)
    if compiled is None:
        async with sessionmaker() as session, _autocommit(session) as connection:
            result = await connection.execute(statement, params)
            if rows:
                return [PlainRow(row._mapping) for row in result.all()], 0
            return [], int(cast(Any, result).rowcount)
    args = _arguments(compiled, params)
    pooled = await engine.raw_connection()
    try:
        return await _execute(pooled, compiled.sql, args, rows=rows)
    finally:
        await _give_back(engine, pooled)


async def _give_back(engine: AsyncEngine, pooled: Any) -> None:
    """Return a connection taken with `raw_connection` to its pool.

    One opened beyond the pool's size is closed on the way back, and SQLAlchemy's asyncpg
    adapter closes a connection only inside a greenlet: outside one the close fails
    (`MissingGreenlet`, logged) and the connection stays open until the garbage collector
    finds it. So such a return goes through `greenlet_spawn`; the usual one, a connection
    the pool keeps, needs none (a greenlet costs about 13 µs)."""
    pool = engine.pool
    if pooled.is_valid and pool.checkedin() >= pool.size():  # type: ignore[attr-defined]
        await greenlet_spawn(pooled.close)
    else:
        pooled.close()


def _arguments(compiled: _Compiled, params: Mapping[str, Any] | None) -> list[Any]:
    """The statement's parameters in order, converted by their SQLAlchemy types."""
    given = params or {}
    missing = compiled.required.difference(given)
    if missing:  # as SQLAlchemy reports it
        problem = f"A value is required for bind parameter {sorted(missing)[0]!r}"
        raise StatementError(problem, compiled.sql, given, InvalidRequestError(problem))
    values = {**compiled.fixed, **given}
    return [
        compiled.converters[name](values[name]) if name in compiled.converters else values[name]
        for name in compiled.names
    ]


async def _execute(
    pooled: Any, sql: str, args: Sequence[Any], *, rows: bool
) -> tuple[list[PlainRow], int]:
    """Run SQL on a pooled connection's asyncpg connection, errors reported as SQLAlchemy
    would (see `_plain`): (its rows, the rows it changed)."""
    try:
        connection = pooled.driver_connection
        assert connection is not None
        if rows:
            records = await connection.fetch(sql, *args)
            return [PlainRow(record) for record in records], len(records)
        status = await connection.execute(sql, *args)
        return [], int(status.rsplit(" ", 1)[-1]) if status[-1:].isdigit() else 0
    except LOST_CONNECTION as exc:
        pooled.invalidate(exc)
        raise DBAPIError(sql, args, exc, connection_invalidated=True) from exc
    except asyncpg.exceptions.InterfaceError as exc:  # "connection is closed": lost while pooled
        driver = pooled.driver_connection
        lost = driver is None or bool(driver.is_closed())
        if lost:
            pooled.invalidate(exc)
        raise DBAPIError(sql, args, exc, connection_invalidated=lost) from exc
    except asyncpg.exceptions.IntegrityConstraintViolationError as exc:
        raise IntegrityError(sql, args, exc) from exc
    except asyncpg.PostgresError as exc:
        raise DBAPIError(sql, args, exc) from exc


class NeedsSession(Exception):
    """A plain transaction met work only a session does (an ORM write, a statement that
    SQLAlchemy must expand at execution): roll it back and do the work in a session."""


class PlainResult:
    """What `run` returns in a plain transaction: the rows, and how many were changed."""

    __slots__ = ("_rows", "rowcount")

    def __init__(self, rows: list[PlainRow], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def first(self) -> PlainRow | None:
        return self._rows[0] if self._rows else None

    def all(self) -> list[PlainRow]:
        return self._rows


class PlainTransaction:
    """A write transaction on a pooled asyncpg connection, without a session (PostgreSQL).

    For the end of a call, the one transaction a provider's callback still runs: through
    an `AsyncSession` its `BEGIN`, two statements built once and `COMMIT` cost the API about
    four times the CPU they cost on asyncpg (docs/decisions.md, "The end of a call without
    a session"). It offers what the statements' helpers use of a session: `run` (through
    `execute`), `get_bind()` and `info`. Anything else is an `AttributeError` in
    development and never reached in the paths that use it; work that needs a session
    raises `NeedsSession` (`plain_transaction`'s caller then runs it in one)."""

    def __init__(self, engine: AsyncEngine, pooled: Any) -> None:
        self._engine = engine
        self._pooled = pooled
        self.info: dict[str, Any] = {}

    def get_bind(self) -> AsyncEngine:
        return self._engine

    async def execute(
        self, statement: Executable, params: Mapping[str, Any] | None = None
    ) -> PlainResult:
        compiled = _compiled(statement, self._engine.dialect)
        if compiled is None:
            raise NeedsSession(str(statement))
        rows, count = await _execute(
            self._pooled, compiled.sql, _arguments(compiled, params), rows=compiled.rows
        )
        return PlainResult(rows, count)


@asynccontextmanager
async def plain_transaction(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[PlainTransaction]:
    """`write_transaction` on asyncpg directly (PostgreSQL): commits on success, rolls back
    on any exception, which it lets through (`NeedsSession` included)."""
    engine = cast(AsyncEngine, sessionmaker.kw["bind"])
    pooled = await engine.raw_connection()
    try:
        await _execute(pooled, "BEGIN", (), rows=False)
        try:
            yield PlainTransaction(engine, pooled)
        except BaseException:
            if pooled.is_valid:
                try:
                    await _execute(pooled, "ROLLBACK", (), rows=False)
                except BaseException as failed:  # (the error that got here is the one to raise)
                    # Never give the pool back a connection that may still be in a
                    # transaction, or in the middle of a cancelled statement.
                    pooled.invalidate(failed)
            raise
        await _execute(pooled, "COMMIT", (), rows=False)
    finally:
        await _give_back(engine, pooled)


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
