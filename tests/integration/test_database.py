"""Statements run alone (`database.write_alone`, `read_alone`) and plain transactions
(`plain_transaction`): on PostgreSQL they bypass the session and SQLAlchemy's execution, so
what SQLAlchemy would do for them is checked here: parameters converted by their types,
rows by name, a lost connection reported, a transaction all or nothing."""

from __future__ import annotations

import asyncio
import gc
import warnings
from collections.abc import Awaitable, Callable

import asyncpg
import pytest
from fastapi import FastAPI
from sqlalchemy import bindparam, func, make_url, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError, StatementError
from tests.integration.test_webhooks import ringing_calls
from tests.support import Tenant, database_restart

from outdial.config import Settings
from outdial.database import (
    NeedsSession,
    create_engine,
    create_sessionmaker,
    plain_transaction,
    read_alone,
    run,
    write_alone,
    write_alone_first,
)
from outdial.dialer.store import calls, events
from outdial.models import CallEvent, utcnow

RENAME = update(calls).where(calls.c.id == bindparam("call_id")).values(to_number="+14155559999")
# (`updated_at` given: SQLAlchemy computes its default in Python, which a plain transaction
# does not run; the statements of a call's end give it too)
RENAME_PLAIN = RENAME.values(updated_at=func.now())


async def test_statements_alone_take_typed_parameters_and_give_named_rows(
    app: FastAPI, tenant: Tenant
) -> None:
    sessionmaker = app.state.sessionmaker
    (call_id,) = await ringing_calls(app, tenant, 1, "s")
    payload = {"CallStatus": "ringing", "nested": {"a": [1, 2]}}
    insert = (
        events.insert()
        .values(
            call_id=bindparam("c"),
            dedupe_key="k",
            payload=bindparam("p", type_=events.c.payload.type),
            received_at=bindparam("t", type_=events.c.received_at.type),
        )
        .returning(events.c.call_id, events.c.dedupe_key)
    )
    row = await write_alone_first(sessionmaker, insert, {"c": call_id, "p": payload, "t": utcnow()})
    assert row is not None and (row.call_id, row._mapping["dedupe_key"]) == (call_id, "k")
    async with sessionmaker() as session:
        stored = (
            await session.scalars(select(CallEvent).where(CallEvent.call_id == call_id))
        ).one()
    assert stored.payload == payload and stored.received_at is not None
    assert await write_alone(sessionmaker, RENAME, {"call_id": call_id}) == 1
    assert await write_alone(sessionmaker, RENAME, {"call_id": "call_unknown"}) == 0
    (read,) = await read_alone(sessionmaker, select(calls.c.to_number).where(calls.c.id == call_id))
    assert read.to_number == "+14155559999"


async def test_a_statement_alone_on_a_lost_connection_is_reported_and_the_next_reconnects(
    app: FastAPI, tenant: Tenant, backend: str
) -> None:
    """A database restart: the statement that finds its pooled connection gone fails as a
    lost connection (the API answers it 503), and the next one gets a new connection."""
    if backend == "sqlite":
        pytest.skip("SQLite has no connection to lose")
    sessionmaker = app.state.sessionmaker
    (call_id,) = await ringing_calls(app, tenant, 1, "s")
    assert await write_alone(sessionmaker, RENAME, {"call_id": call_id}) == 1  # pooled now

    async def rename() -> None:
        assert await write_alone(sessionmaker, RENAME, {"call_id": call_id}) == 1

    async with database_restart(app.state.engine):
        assert await lost_until_reconnected(rename) >= 1


async def lost_until_reconnected(attempt: Callable[[], Awaitable[None]]) -> int:
    """Run `attempt` until it succeeds on a new connection, after a database restart: how
    many times it found its pooled connection lost (each reported as one)."""
    lost = 0
    for _ in range(40):  # at most every pooled connection is found lost once
        try:
            await attempt()
            return lost
        except DBAPIError as exc:
            assert exc.connection_invalidated
            lost += 1
    pytest.fail("nothing got a new connection")


async def test_a_statement_alone_that_breaks_a_constraint_is_an_integrity_error(
    app: FastAPI, tenant: Tenant
) -> None:
    sessionmaker = app.state.sessionmaker
    first, second = await ringing_calls(app, tenant, 2, "s")
    await write_alone(sessionmaker, RENAME, {"call_id": first})
    with pytest.raises(IntegrityError):  # one live call per number and account
        await write_alone(sessionmaker, RENAME, {"call_id": second})


async def test_a_statement_alone_without_a_required_parameter_is_refused(
    app: FastAPI, tenant: Tenant
) -> None:
    """As SQLAlchemy refuses it: a forgotten parameter must not become NULL."""
    (call_id,) = await ringing_calls(app, tenant, 1, "s")
    with pytest.raises(StatementError, match="call_id"):
        await write_alone(app.state.sessionmaker, RENAME, {})
    (row,) = await read_alone(
        app.state.sessionmaker, select(calls.c.to_number).where(calls.c.id == call_id)
    )
    assert row.to_number != "+14155559999"


async def test_a_plain_transaction_commits_its_statements_together_or_none(
    app: FastAPI, tenant: Tenant, backend: str
) -> None:
    """`plain_transaction` (PostgreSQL): its statements see each other and commit at the
    end; an exception rolls all of them back, the integrity error of a later one too."""
    if backend == "sqlite":
        pytest.skip("a plain transaction is PostgreSQL's")
    sessionmaker = app.state.sessionmaker
    first, second = await ringing_calls(app, tenant, 2, "s")
    number = select(calls.c.to_number).where(calls.c.id == bindparam("call_id"))

    async def numbers() -> list[str]:
        rows = [await read_alone(sessionmaker, number, {"call_id": c}) for c in (first, second)]
        return [row.to_number for (row,) in rows]

    before = await numbers()
    with pytest.raises(IntegrityError):  # one live call per number: the second update fails
        async with plain_transaction(sessionmaker) as transaction:
            assert (await run(transaction, RENAME_PLAIN, {"call_id": first})).rowcount == 1
            (seen,) = (await run(transaction, number, {"call_id": first})).all()
            assert seen.to_number == "+14155559999"  # its own write, before the commit
            await run(transaction, RENAME_PLAIN, {"call_id": second})
    assert await numbers() == before
    async with plain_transaction(sessionmaker) as transaction:
        assert (await run(transaction, RENAME_PLAIN, {"call_id": first})).rowcount == 1
        assert (await run(transaction, RENAME_PLAIN, {"call_id": "call_unknown"})).rowcount == 0
    assert await numbers() == ["+14155559999", before[1]]


async def test_a_plain_transaction_gives_up_what_needs_a_session_and_writes_nothing(
    app: FastAPI, tenant: Tenant, backend: str
) -> None:
    """A statement SQLAlchemy must expand at execution (a list of values) is not run
    plain: `NeedsSession`, and the statements before it are rolled back."""
    if backend == "sqlite":
        pytest.skip("a plain transaction is PostgreSQL's")
    sessionmaker = app.state.sessionmaker
    (call_id,) = await ringing_calls(app, tenant, 1, "s")
    expanding = select(calls.c.id).where(calls.c.id.in_(bindparam("ids", expanding=True)))
    with pytest.raises(NeedsSession):
        async with plain_transaction(sessionmaker) as transaction:
            await run(transaction, RENAME_PLAIN, {"call_id": call_id})
            await run(transaction, expanding, {"ids": [call_id]})
    (row,) = await read_alone(sessionmaker, select(calls.c.to_number).where(calls.c.id == call_id))
    assert row.to_number != "+14155559999"


async def test_a_plain_transaction_on_a_lost_connection_is_reported_and_the_next_reconnects(
    app: FastAPI, tenant: Tenant, backend: str
) -> None:
    if backend == "sqlite":
        pytest.skip("SQLite has no connection to lose")
    sessionmaker = app.state.sessionmaker
    (call_id,) = await ringing_calls(app, tenant, 1, "s")
    async with plain_transaction(sessionmaker) as transaction:  # pooled now
        await run(transaction, RENAME_PLAIN, {"call_id": call_id})

    async def rename() -> None:
        async with plain_transaction(sessionmaker) as transaction:
            renamed = await run(transaction, RENAME_PLAIN, {"call_id": call_id})
        assert renamed.rowcount == 1

    async with database_restart(app.state.engine):
        assert await lost_until_reconnected(rename) >= 1


async def test_a_cancelled_plain_transaction_leaves_no_lock_behind(
    app: FastAPI, tenant: Tenant, backend: str
) -> None:
    """A request cancelled while its plain transaction waits for a row lock (the client went
    away): its connection must not go back to the pool still in the transaction, holding
    the rows it locked."""
    if backend == "sqlite":
        pytest.skip("a plain transaction is PostgreSQL's")
    sessionmaker = app.state.sessionmaker
    first, second = await ringing_calls(app, tenant, 2, "s")
    url = make_url(str(app.state.settings.database_url)).set(drivername="postgresql")
    dsn = url.render_as_string(hide_password=False)
    blocker = await asyncpg.connect(dsn)
    moved = select(calls.c.id).where(calls.c.id == bindparam("call_id")).with_for_update()
    try:
        await blocker.execute("BEGIN")
        await blocker.execute("SELECT 1 FROM calls WHERE id = $1 FOR UPDATE", second)

        async def both() -> None:
            async with plain_transaction(sessionmaker) as transaction:
                await run(transaction, moved, {"call_id": first})  # locked by it
                await run(transaction, moved, {"call_id": second})  # waits for the blocker

        waiting = asyncio.ensure_future(both())
        await asyncio.sleep(0.3)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await blocker.execute("ROLLBACK")
        await blocker.execute("SET lock_timeout = '2s'")
        assert await blocker.fetchval("SELECT id FROM calls WHERE id = $1 FOR UPDATE", first)
    finally:
        await blocker.close()
    for _ in range(3):  # and the pool's connections work
        async with plain_transaction(sessionmaker) as transaction:
            assert (await run(transaction, moved, {"call_id": first})).first() is not None


async def test_a_connection_beyond_the_pool_is_closed_when_given_back(
    settings: Settings, backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A pool of one, three statements alone and a plain transaction at once: the
    connections opened beyond it are closed as they come back (SQLAlchemy's asyncpg adapter
    closes only inside a greenlet; outside one the close fails and is logged, and the
    connection is left for the garbage collector)."""
    if backend == "sqlite":
        pytest.skip("statements alone and plain transactions are PostgreSQL's")
    engine = create_engine(settings.resolved_database_url, pool_size=1)
    sessionmaker = create_sessionmaker(engine)
    slow = select(func.pg_sleep(0.2))

    async def in_a_transaction() -> None:
        async with plain_transaction(sessionmaker) as transaction:
            await run(transaction, slow)

    try:
        with warnings.catch_warnings(record=True) as warned:
            warnings.simplefilter("always")
            await asyncio.gather(*[read_alone(sessionmaker, slow) for _ in range(3)])
            await asyncio.gather(read_alone(sessionmaker, slow), in_a_transaction())
            gc.collect()
        assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        assert engine.pool.checkedin() == 1  # type: ignore[attr-defined]
        assert not [w for w in warned if issubclass(w.category, ResourceWarning)]
        assert "Exception closing connection" not in caplog.text
    finally:
        await engine.dispose()
