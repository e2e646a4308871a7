"""The do-not-call list: API (add, list, get, remove, CSV import), the dialer's checks
(`blocked_numbers`: the list and the per-number daily cap), opt-outs, and single calls."""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import select, text
from tests.support import Tenant

from outdial.database import write_transaction
from outdial.do_not_call import repository as dnc_repository
from outdial.do_not_call import service as do_not_call
from outdial.ids import new_id
from outdial.models import Call, DoNotCallEntry, utcnow

ANN, BO, CY, DI = "+14155550101", "+14155550102", "+14155550103", "+14155550104"
ED = "+14155550105"


def upload(content: str, **form: str) -> dict[str, Any]:
    files = {"file": ("dnc.csv", io.BytesIO(content.encode()), "text/csv")}
    return {"files": files, "data": form}


async def listed(tenant: Tenant) -> dict[str, dict[str, Any]]:
    response = await tenant.get("/do-not-call", params={"limit": 500})
    assert response.status_code == 200, response.text
    return {entry["phone_number"]: entry for entry in response.json()}


async def test_numbers_are_added_normalised_once_and_listed_newest_first(tenant: Tenant) -> None:
    one = await tenant.ok("POST", "/do-not-call", json={"phone_number": "(415) 555-0101"})
    assert one == {"added": 1, "already_listed": 0, "phone_numbers": [ANN]}
    many = await tenant.ok(
        "POST",
        "/do-not-call",
        json={"phone_numbers": [BO, "415.555.0103", ANN, BO], "reason": "asked by phone"},
    )
    assert many == {"added": 2, "already_listed": 1, "phone_numbers": [BO, CY, ANN]}

    entries = await listed(tenant)
    assert set(entries) == {ANN, BO, CY}
    assert entries[ANN]["reason"] is None  # the first entry of a number stays as it was
    assert entries[BO]["reason"] == "asked by phone" and entries[BO]["source"] == "api"
    assert entries[BO]["created_at"].endswith("Z") and entries[BO]["call_id"] is None

    page = await tenant.get("/do-not-call", params={"limit": 2, "offset": 0})
    assert page.headers["x-total-count"] == "3"
    assert [e["phone_number"] for e in page.json()] == [BO, CY]  # newest first, then by number
    rest = await tenant.get("/do-not-call", params={"limit": 2, "offset": 2})
    assert [e["phone_number"] for e in rest.json()] == [ANN]


async def test_one_number_is_read_and_removed(tenant: Tenant) -> None:
    await tenant.ok("POST", "/do-not-call", json={"phone_number": ANN, "reason": "lawyer"})
    for path in (f"/do-not-call/{ANN}", "/do-not-call/%2B14155550101", "/do-not-call/4155550101"):
        entry = await tenant.ok("GET", path)
        assert entry["phone_number"] == ANN and entry["reason"] == "lawyer"
    assert (await tenant.request("DELETE", f"/do-not-call/{ANN}")).status_code == 204
    for method in ("GET", "DELETE"):
        gone = await tenant.request(method, f"/do-not-call/{ANN}")
        assert gone.status_code == 404
        assert gone.json() == {"detail": "Do-not-call entry not found"}
    garbage = await tenant.get("/do-not-call/not-a-number")
    assert garbage.status_code == 404 and garbage.json() == gone.json()
    assert await listed(tenant) == {}


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"phone_numbers": [ANN, "12", BO, "nope"]}, ["body", "phone_numbers", 1]),
        ({"phone_number": "12"}, ["body", "phone_number"]),
        ({}, ["body"]),
        ({"phone_number": ANN, "phone_numbers": [BO]}, ["body"]),
        ({"phone_numbers": []}, ["body", "phone_numbers"]),
        ({"phone_number": ANN, "reason": "x" * 501}, ["body", "reason"]),
        ({"phone_number": ANN, "colour": "red"}, ["body", "colour"]),
    ],
)
async def test_bad_input_is_a_422_and_adds_nothing(
    tenant: Tenant, body: dict[str, Any], loc: list[Any]
) -> None:
    response = await tenant.post("/do-not-call", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == loc
    if "phone_numbers" in body and len(body["phone_numbers"]) == 4:
        assert [p["loc"][-1] for p in response.json()["detail"]] == [1, 3]
    assert await listed(tenant) == {}


async def test_a_csv_adds_its_good_rows_and_reports_the_bad_ones(tenant: Tenant) -> None:
    await tenant.ok("POST", "/do-not-call", json={"phone_number": DI, "reason": "earlier"})
    csv = (
        "Phone,Reason,Name\n"
        f"{ANN},sued us,Ann\n"
        "not-a-number,,Bad\n"
        f"(415) 555-0102,,Bo\n"
        ",,Nobody\n"
        "\n"
        f"{ANN},again,Ann\n"
        f"{DI},,Di\n"
        f"+1 415 555 0103,{'x' * 501},Cy\n"
    )
    report = await tenant.ok("POST", "/do-not-call/upload-csv", **upload(csv, reason="csv import"))
    assert report["imported"] == 2 and report["already_listed"] == 2
    assert report["rejected"] == 3 and report["errors_truncated"] is False
    problems = {(e["row"], e["column"], e["reason"].split(":")[0]) for e in report["errors"]}
    assert problems == {
        (3, "phone", "invalid number"),
        (5, "phone", "missing phone number"),
        (9, "reason", "reason is longer than 500 characters"),
    }
    entries = await listed(tenant)
    assert set(entries) == {ANN, BO, DI}
    assert entries[ANN]["reason"] == "sued us" and entries[ANN]["source"] == "csv"
    assert entries[BO]["reason"] == "csv import"  # no cell: the form's reason
    assert entries[DI]["reason"] == "earlier" and entries[DI]["source"] == "api"


@pytest.mark.parametrize(
    "csv",
    [
        "name,email\nAnn,a@example.com\n",  # no phone column
        "phone_number\nnope\n12\n",  # no good row
        "phone_number\n",  # no rows
        "",  # empty
    ],
)
async def test_a_refused_csv_is_a_422_and_adds_nothing(tenant: Tenant, csv: str) -> None:
    response = await tenant.post("/do-not-call/upload-csv", **upload(csv))
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"][:2] == ["body", "file"]
    assert await listed(tenant) == {}


async def test_one_users_list_is_invisible_to_another(tenant: Tenant, other_tenant: Tenant) -> None:
    await other_tenant.ok("POST", "/do-not-call", json={"phone_numbers": [ANN, BO]})
    await tenant.ok("POST", "/do-not-call", json={"phone_number": CY})
    assert set(await listed(tenant)) == {CY}
    mine = await tenant.get("/do-not-call")
    assert mine.headers["x-total-count"] == "1"
    for method in ("GET", "DELETE"):
        response = await tenant.request(method, f"/do-not-call/{ANN}")
        assert response.status_code == 404
    assert set(await listed(other_tenant)) == {ANN, BO}
    # Adding a number another user lists is a new entry of one's own.
    assert (await tenant.ok("POST", "/do-not-call", json={"phone_number": ANN}))["added"] == 1


async def insert_calls(
    app: FastAPI, user_id: str, number: str, ages: list[timedelta], **fields: Any
) -> None:
    now = utcnow()
    async with write_transaction(app.state.sessionmaker) as session:
        for age in ages:
            session.add(
                Call(
                    id=new_id("call"),
                    user_id=user_id,
                    provider="twilio",
                    to_number=number,
                    status=fields.get("status", "completed"),
                    ended_reason=fields.get("ended_reason"),
                    dial_started_at=fields.get("dial_started_at", now - age),
                    created_at=now - age,
                )
            )


async def blocked(
    app: FastAPI, user_id: str, numbers: list[str], cap: int | None
) -> dict[str, str]:
    async with app.state.sessionmaker() as session:
        return await do_not_call.blocked_numbers(session, user_id, numbers, utcnow(), daily_cap=cap)


async def test_blocked_numbers_names_listed_numbers(app: FastAPI, tenant: Tenant) -> None:
    await tenant.ok("POST", "/do-not-call", json={"phone_numbers": [ANN, CY]})
    assert await blocked(app, tenant.user_id, [ANN, BO, CY], None) == {ANN: "dnc", CY: "dnc"}
    assert await blocked(app, tenant.user_id, [BO], 3) == {}
    assert await blocked(app, tenant.user_id, [], 3) == {}
    await tenant.ok("DELETE", f"/do-not-call/{ANN}")
    assert await blocked(app, tenant.user_id, [ANN, BO, CY], 3) == {CY: "dnc"}


async def test_blocked_numbers_applies_the_rolling_daily_cap(
    app: FastAPI, tenant: Tenant, other_tenant: Tenant
) -> None:
    hours = [timedelta(hours=h) for h in (1, 5, 23)]
    await insert_calls(app, tenant.user_id, ANN, hours)  # three in the last 24 h
    await insert_calls(app, tenant.user_id, BO, [*hours[:2], timedelta(hours=25)])  # two
    # A dial given back before it left (canceled, never sent) does not count.
    await insert_calls(app, tenant.user_id, CY, hours[:2], status="canceled")
    await insert_calls(
        app, tenant.user_id, CY, [timedelta(minutes=1)], status="canceled", dial_started_at=None
    )
    await insert_calls(app, other_tenant.user_id, DI, hours)  # another account's calls
    # Calls the provider refused for the account's sake called nobody: they do not count.
    await insert_calls(
        app, tenant.user_id, ED, hours, status="failed", ended_reason="provider_refused"
    )
    numbers = [ANN, BO, CY, DI, ED]

    assert await blocked(app, tenant.user_id, numbers, 3) == {ANN: "daily_cap"}
    assert await blocked(app, tenant.user_id, numbers, 2) == {
        ANN: "daily_cap",
        BO: "daily_cap",
        CY: "daily_cap",
    }
    assert await blocked(app, tenant.user_id, numbers, 4) == {}
    assert await blocked(app, tenant.user_id, numbers, None) == {}
    assert await blocked(app, tenant.user_id, numbers, 0) == {}
    assert await blocked(app, other_tenant.user_id, numbers, 3) == {DI: "daily_cap"}
    # The list wins over the cap.
    await tenant.ok("POST", "/do-not-call", json={"phone_number": ANN})
    assert await blocked(app, tenant.user_id, numbers, 3) == {ANN: "dnc"}

    now = utcnow()
    async with app.state.sessionmaker() as session:
        frees = await do_not_call.daily_cap_frees_at(
            session, tenant.user_id, numbers, now, daily_cap=3
        )
    assert set(frees) == {ANN}
    # The third most recent call (23 h ago) turns 24 h old in about an hour.
    assert timedelta(minutes=59) < frees[ANN] - now <= timedelta(hours=1)


async def test_the_blocked_query_is_backed_by_indexes(
    app: FastAPI, tenant: Tenant, backend: str
) -> None:
    await insert_calls(app, tenant.user_id, ANN, [timedelta(hours=1)])
    async with app.state.sessionmaker() as session:
        dialect = session.get_bind().dialect
        query = dnc_repository.blocked_query(dialect.name, capped=True, live=True)
        bound = query.params(dnc_repository.blocked_params(tenant.user_id, [ANN, BO], utcnow(), 3))
        statement = str(bound.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
        if backend == "postgresql":
            await session.execute(text("SET LOCAL enable_seqscan = off"))
            plan = "\n".join((await session.execute(text(f"EXPLAIN {statement}"))).scalars())
        else:
            rows = await session.execute(text(f"EXPLAIN QUERY PLAN {statement}"))
            plan = "\n".join(str(row[-1]) for row in rows)
    assert "ix_calls_user_number_created" in plan, plan
    assert "Seq Scan" not in plan and "SCAN " not in plan, plan  # no full scan anywhere


async def test_an_opt_out_is_added_once(app: FastAPI, tenant: Tenant) -> None:
    async with write_transaction(app.state.sessionmaker) as session:
        first = await do_not_call.add_opt_out(session, tenant.user_id, ANN, call_id="call_abc")
        again = await do_not_call.add_opt_out(session, tenant.user_id, ANN, "said stop")
    async with write_transaction(app.state.sessionmaker) as session:
        later = await do_not_call.add_opt_out(session, tenant.user_id, ANN)
    assert (first, again, later) == (True, False, False)
    entry = await tenant.ok("GET", f"/do-not-call/{ANN}")
    assert entry["source"] == "opt_out" and entry["call_id"] == "call_abc"
    assert entry["reason"] == do_not_call.OPT_OUT_REASON
    async with app.state.sessionmaker() as session:
        rows = await session.scalars(
            select(DoNotCallEntry).where(DoNotCallEntry.user_id == tenant.user_id)
        )
        assert len(rows.all()) == 1
    added = await tenant.ok("POST", "/do-not-call", json={"phone_number": ANN})
    assert added["already_listed"] == 1
    assert await blocked(app, tenant.user_id, [ANN], 3) == {ANN: "dnc"}


async def test_a_single_call_refuses_listed_and_capped_numbers(
    app: FastAPI, tenant: Tenant
) -> None:
    number = await tenant.phone_number(assistant_id=(await tenant.assistant())["id"])
    await tenant.ok("POST", "/do-not-call", json={"phone_number": ANN})
    listed_call = await tenant.post(
        "/calls", json={"phone_number_id": number["id"], "to_number": ANN}
    )
    assert listed_call.status_code == 409
    assert listed_call.json() == {"detail": f"{ANN} is on the do-not-call list"}

    cap = app.state.settings.max_calls_per_number_per_day
    await insert_calls(app, tenant.user_id, BO, [timedelta(hours=2)] * cap)
    capped = await tenant.post("/calls", json={"phone_number_id": number["id"], "to_number": BO})
    assert capped.status_code == 409
    assert "already called 3 times in the last 24 hours" in capped.json()["detail"]
    assert {c["to_number"] for c in await tenant.ok("GET", "/calls")} == {BO}
