"""Statements run alone (`database.write_alone`, `read_alone`): on PostgreSQL they bypass
the session and SQLAlchemy's execution, so what SQLAlchemy would do for them is checked
here: parameters converted by their types, rows by name, a lost connection reported."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError, StatementError
from tests.integration.test_webhooks import ringing_calls
from tests.support import Tenant, database_restart

from outdial.database import read_alone, write_alone, write_alone_first
from outdial.dialer.store import calls, events
from outdial.models import CallEvent, utcnow

RENAME = update(calls).where(calls.c.id == bindparam("call_id")).values(to_number="+14155559999")


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
    async with database_restart(app.state.engine):
        lost = 0
        for _ in range(40):  # at most every pooled connection is found lost once
            try:
                assert await write_alone(sessionmaker, RENAME, {"call_id": call_id}) == 1
                break
            except DBAPIError as exc:
                assert exc.connection_invalidated
                lost += 1
        else:
            pytest.fail("no statement got a new connection")
    assert lost >= 1


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
