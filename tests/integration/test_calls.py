"""Reading calls: GET /calls (filters, paging), GET /calls/{id}, GET /campaign/{id}/calls.

Placing calls is the dialer's job; here call rows are written straight through the ORM.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from tests.support import Tenant

from outdial.ids import new_id
from outdial.models import Call

START = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
ASSISTANT_CONFIG = {"first_message": "Hello Ann!", "voice": {"speed": 1.1}}


async def insert_calls(app: FastAPI, tenant: Tenant, rows: list[dict[str, Any]]) -> list[str]:
    """Insert calls one minute apart (oldest first); their ids in that order."""
    calls = [
        Call(
            id=new_id("call"),
            user_id=tenant.user_id,
            provider="twilio",
            to_number=f"+1415555{index:04d}",
            created_at=START + timedelta(minutes=index),
            **{"status": "completed", **row},
        )
        for index, row in enumerate(rows)
    ]
    async with app.state.sessionmaker() as session, session.begin():
        session.add_all(calls)
    return [call.id for call in calls]


async def first_recipient_id(tenant: Tenant, campaign_id: str) -> int:
    recipients = await tenant.ok("GET", f"/campaign/{campaign_id}/recipients")
    return int(recipients[0]["id"].removeprefix("rcp_"))


@pytest.fixture
async def history(app: FastAPI, tenant: Tenant) -> dict[str, Any]:
    """Two campaigns with calls in several statuses, and one ad-hoc call."""
    one = await tenant.campaign(recipients=[{"phone_number": "+14155550100"}])
    two = await tenant.campaign(
        assistant_id=one["assistant_id"],
        phone_number_id=one["phone_number_id"],
        recipients=[{"phone_number": "+14155550101"}],
    )
    recipient = await first_recipient_id(tenant, one["id"])
    ids = await insert_calls(
        app,
        tenant,
        [
            {"campaign_id": one["id"], "recipient_id": recipient, "status": "no_answer"},
            {"campaign_id": one["id"], "recipient_id": recipient, "attempt": 2, "status": "busy"},
            {
                "campaign_id": one["id"],
                "recipient_id": recipient,
                "attempt": 3,
                "answered_by": "human",
                "ended_reason": "assistant_hangup",
                "assistant_config": ASSISTANT_CONFIG,
                "summary": "Ann will renew.",
                "duration_seconds": 42,
            },
            {"campaign_id": two["id"], "status": "completed"},
            {"status": "failed"},
        ],
    )
    return {"one": one["id"], "two": two["id"], "calls": ids, "recipient": recipient}


def newest_first(ids: list[str]) -> list[str]:
    return list(reversed(ids))


async def test_lists_every_call_newest_first(tenant: Tenant, history: dict[str, Any]) -> None:
    response = await tenant.get("/calls")
    assert response.status_code == 200
    assert [call["id"] for call in response.json()] == newest_first(history["calls"])
    assert response.headers["x-total-count"] == "5"


@pytest.mark.parametrize(
    ("filters", "picked"),
    [
        ({"campaign": "one"}, [0, 1, 2]),
        ({"campaign": "two"}, [3]),
        ({"status": "completed"}, [2, 3]),
        ({"status": "failed"}, [4]),
        ({"campaign": "one", "status": "busy"}, [1]),
        ({"campaign": "two", "status": "busy"}, []),
        ({"status": "ringing"}, []),
    ],
)
async def test_filters_by_campaign_and_status(
    tenant: Tenant, history: dict[str, Any], filters: dict[str, str], picked: list[int]
) -> None:
    params = {"status": filters["status"]} if "status" in filters else {}
    if "campaign" in filters:
        params["campaign_id"] = history[filters["campaign"]]
    response = await tenant.get("/calls", params=params)
    assert response.status_code == 200, response.text
    expected = newest_first([history["calls"][i] for i in picked])
    assert [call["id"] for call in response.json()] == expected
    assert response.headers["x-total-count"] == str(len(picked))


async def test_pages_with_limit_and_offset(tenant: Tenant, history: dict[str, Any]) -> None:
    expected = newest_first(history["calls"])
    seen = []
    for offset in (0, 2, 4, 6):
        response = await tenant.get("/calls", params={"limit": 2, "offset": offset})
        assert response.headers["x-total-count"] == "5"
        seen += [call["id"] for call in response.json()]
    assert seen == expected


@pytest.mark.parametrize(
    ("params", "where"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"offset": -1}, "offset"),
        ({"limit": "ten"}, "limit"),
        ({"limit": "9" * 40}, "limit"),
        ({"status": "exploded"}, "status"),
        ({"campaign_id": "c" * 65}, "campaign_id"),
    ],
)
async def test_bad_query_parameters_are_a_422_naming_them(
    tenant: Tenant, params: dict[str, Any], where: str
) -> None:
    response = await tenant.get("/calls", params=params)
    assert response.status_code == 422, response.text
    assert [problem["loc"] for problem in response.json()["detail"]] == [["query", where]]


@pytest.mark.parametrize("campaign_id", ["nope", "cmp_\x00", "cmp_0000", "'; DROP TABLE calls;--"])
async def test_a_campaign_filter_matching_nothing_is_an_empty_page(
    tenant: Tenant, history: dict[str, Any], campaign_id: str
) -> None:
    response = await tenant.get("/calls", params={"campaign_id": campaign_id})
    assert response.status_code == 200, response.text
    assert response.json() == []
    assert response.headers["x-total-count"] == "0"


async def test_one_call_shows_its_links_and_outcome(
    tenant: Tenant, history: dict[str, Any]
) -> None:
    call = await tenant.ok("GET", f"/calls/{history['calls'][2]}")
    assert call["id"] == history["calls"][2]
    assert call["campaign_id"] == history["one"]
    assert call["recipient_id"] == f"rcp_{history['recipient']}"
    assert call["attempt"] == 3
    assert call["status"] == "completed"
    assert call["answered_by"] == "human"
    assert call["ended_reason"] == "assistant_hangup"
    assert call["assistant_config"] == ASSISTANT_CONFIG
    assert call["summary"] == "Ann will renew."
    assert call["duration_seconds"] == 42
    assert call["to_number"] == "+14155550002"
    assert call["provider"] == "twilio"
    assert call["created_at"] == "2026-11-20T09:02:00.000000Z"
    assert call["timestamp"] == call["created_at"]


async def test_an_ad_hoc_call_has_no_campaign(tenant: Tenant, history: dict[str, Any]) -> None:
    call = await tenant.ok("GET", f"/calls/{history['calls'][4]}")
    assert call["campaign_id"] is None
    assert call["recipient_id"] is None
    assert call["attempt"] == 1
    assert call["assistant_config"] is None


@pytest.mark.parametrize(
    "call_id", ["call_00000000000000000000", "nope", "call_%00", "call_%ED%A0%80", "x" * 300]
)
async def test_an_unknown_call_is_a_404(tenant: Tenant, call_id: str) -> None:
    response = await tenant.get(f"/calls/{call_id}")
    assert response.status_code == 404
    assert response.json() == {"detail": "Call not found"}


async def test_campaign_calls_lists_only_that_campaign(
    tenant: Tenant, history: dict[str, Any]
) -> None:
    path = f"/campaign/{history['one']}/calls"
    response = await tenant.get(path)
    assert [call["id"] for call in response.json()] == newest_first(history["calls"][:3])
    assert response.headers["x-total-count"] == "3"

    page = await tenant.get(path, params={"limit": 1, "offset": 1, "status": "busy"})
    assert page.json() == []
    assert page.headers["x-total-count"] == "1"
    busy = await tenant.get(path, params={"status": "busy"})
    assert [call["id"] for call in busy.json()] == [history["calls"][1]]


async def test_campaign_calls_of_an_unknown_campaign_is_a_404(tenant: Tenant) -> None:
    response = await tenant.get("/campaign/cmp_00000000000000000000/calls")
    assert response.status_code == 404
    assert response.json() == {"detail": "Campaign not found"}
