"""The dialer keeps to calling hours: outside the window nobody is dialed, and each waiting
recipient shows until when and why; a window that never opens skips, one that opens only
after the schedule's end expires."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from tests.claiming import (
    a_sender,
    claimed_for_later,
    clock,
    recipients,
    waiting_for_the_window,
    window_around,
)
from tests.dialing import FAST, HUMANS_ONLY, Service, campaign_when, wait_for
from tests.support import numbers

from outdial.database import write_transaction
from outdial.dialer import claim as claiming
from outdial.dialer import store

NEW_YORK = "+12127365000"  # America/New_York only
KOLKATA = "+919876543210"  # Asia/Kolkata only
TOLL_FREE = "+18002752273"  # from Pacific/Guam to America/Adak: no hour holds in all


async def test_outside_the_window_nobody_is_dialed_and_each_shows_why(service: Service) -> None:
    tenant, campaign, rows = await waiting_for_the_window(service, 4, max_concurrency=5)
    opens = datetime.now(UTC) + timedelta(hours=2)
    for row in rows.values():
        assert row["status"] == "pending" and row["attempts"] == 0
        assert row["status_reason"].startswith("outside calling hours")
        waits_until = datetime.fromisoformat(row["next_attempt_at"])
        assert abs((waits_until - opens).total_seconds()) < 120
    current = await tenant.ok("GET", f"/campaign/{campaign['id']}")
    assert current["status"] == "running" and current["counts"]["pending"] == 4
    assert current["counts"]["calls_placed"] == 0
    assert (await service.observed())["created"] == 0


async def test_recipients_put_off_are_dialed_once_the_edited_hours_hold(
    service: Service,
) -> None:
    """Calling hours edited on a running campaign apply to its next dial: recipients put
    off until the old window opened are dialed now that the new one holds."""
    tenant, campaign, _rows = await waiting_for_the_window(service, 3, max_concurrency=5)
    hours = {**window_around("UTC", timedelta(hours=1), timedelta(hours=1)), "timezone": "UTC"}
    await tenant.ok("PATCH", f"/campaign/{campaign['id']}", json={"calling_hours": hours})
    done = await campaign_when(tenant, campaign["id"], lambda c: c["status"] == "completed", 30)
    assert done["counts"]["completed"] == 3
    rows = await recipients(tenant, campaign["id"])
    assert all(r["attempts"] == 1 and r["status"] == "completed" for r in rows.values())


async def test_each_recipient_is_dialed_in_its_own_local_hours(service: Service) -> None:
    await service.scenario(**HUMANS_ONLY, **FAST)
    tenant = await service.tenant()
    # Open now in New York; Kolkata's clock is 9.5 or 10.5 hours ahead, so it is closed there.
    hours = {
        **window_around("America/New_York", timedelta(hours=2), timedelta(hours=2)),
        "timezone": "recipient",
    }
    campaign = await tenant.campaign(
        max_concurrency=5,
        calling_hours=hours,
        recipients=[{"phone_number": NEW_YORK}, {"phone_number": KOLKATA}],
    )
    await tenant.ok("POST", f"/campaign/{campaign['id']}/start")

    async def new_york_done() -> Any:
        rows = await recipients(tenant, campaign["id"])
        return rows if rows[NEW_YORK]["status"] == "completed" else None

    rows = await wait_for(new_york_done)
    kolkata = rows[KOLKATA]
    assert kolkata["status"] == "pending" and kolkata["attempts"] == 0
    assert "Asia/Kolkata" in kolkata["status_reason"]
    waits_until = datetime.fromisoformat(kolkata["next_attempt_at"])
    local_open = waits_until.astimezone(ZoneInfo("Asia/Kolkata"))
    assert waits_until > datetime.now(UTC) and clock(local_open) == hours["start"]
    calls = await tenant.ok("GET", "/calls", params={"campaign_id": campaign["id"]})
    assert [c["to_number"] for c in calls] == [NEW_YORK]


async def test_a_window_that_never_opens_skips_and_the_campaign_completes(
    service: Service,
) -> None:
    await service.scenario(**HUMANS_ONLY, **FAST)
    tenant = await service.tenant()
    campaign = await tenant.campaign(
        calling_hours={"start": "09:00", "end": "10:00", "timezone": "recipient"},
        recipients=[{"phone_number": TOLL_FREE}],
    )
    await tenant.ok("POST", f"/campaign/{campaign['id']}/start")

    done = await campaign_when(tenant, campaign["id"], lambda c: c["status"] == "completed")
    assert done["ended_reason"] == "all_recipients_done"
    assert done["counts"]["skipped"] == 1 and done["counts"]["calls_placed"] == 0
    row = (await recipients(tenant, campaign["id"]))[TOLL_FREE]
    assert row["status"] == "skipped" and "never hold at once" in row["status_reason"]
    assert (await service.observed())["created"] == 0


async def test_a_window_that_opens_after_the_schedule_ends_expires(service: Service) -> None:
    await service.scenario(**HUMANS_ONLY, **FAST)
    tenant = await service.tenant()
    hours = {
        **window_around("UTC", -timedelta(hours=3), timedelta(hours=4)),
        "timezone": "UTC",
    }
    end = datetime.now(UTC) + timedelta(hours=1)
    campaign = await tenant.campaign(
        calling_hours=hours,
        scheduleEndTime=end.isoformat(),
        recipients=[{"phone_number": n} for n in numbers(3)],
    )
    await tenant.ok("POST", f"/campaign/{campaign['id']}/start")

    done = await campaign_when(tenant, campaign["id"], lambda c: c["status"] == "completed")
    assert done["counts"]["expired"] == 3 and done["counts"]["calls_placed"] == 0
    rows = await recipients(tenant, campaign["id"])
    assert all(r["status"] == "expired" for r in rows.values())
    assert all("after the schedule ends" in r["status_reason"] for r in rows.values())


async def test_a_dial_whose_window_closed_while_it_waited_is_given_back(
    service: Service,
) -> None:
    """Checked again at the moment of the dial: a job claimed inside the window (here: claimed
    for an instant two hours ahead, when it is open) is not sent once outside it."""
    tenant, campaign, _ = await waiting_for_the_window(service, 1)
    jobs = await claimed_for_later(service, campaign["id"])
    assert len(jobs) == 1 and jobs[0].window is not None
    assert await a_sender(service).send(replace(jobs[0], dial_at=datetime.now(UTC))) is False

    call = await tenant.ok("GET", f"/calls/{jobs[0].call_id}")
    assert call["status"] == "canceled" and call["ended_reason"] == "outside_calling_hours"
    # Created as of the instant the claim checked, not when its row was written.
    claimed_at = datetime.fromisoformat(call["created_at"])
    assert claimed_at - datetime.now(UTC) > timedelta(hours=2)
    row = next(iter((await recipients(tenant, campaign["id"])).values()))
    assert row["status"] == "pending" and row["attempts"] == 0
    assert row["status_reason"].startswith("outside calling hours")
    counts = (await tenant.ok("GET", f"/campaign/{campaign['id']}"))["counts"]
    assert counts["pending"] == 1 and counts["dialing"] == 0 and counts["calls_placed"] == 0
    assert (await service.observed())["created"] == 0


@pytest.mark.parametrize(
    ("end", "status", "reason"),
    [("stop", "cancelled", "campaign stopped"), ("schedule", "expired", "schedule ended")],
)
async def test_a_dial_given_back_after_the_campaign_ended_ends_its_recipient(
    service: Service, end: str, status: str, reason: str
) -> None:
    """A stop or the schedule's end leaves a dialing recipient to its call; a dial that the
    gate then refuses ends the recipient as the end made of every waiting one (it must not
    go back to pending in a completed campaign)."""
    tenant, campaign, _ = await waiting_for_the_window(service, 2, max_concurrency=1)
    jobs = await claimed_for_later(service, campaign["id"])
    assert len(jobs) == 1  # max_concurrency 1: the other recipient waits
    if end == "stop":
        await tenant.ok("POST", f"/campaign/{campaign['id']}/stop")
    else:
        async with write_transaction(service.app.state.sessionmaker) as session:
            locked = await claiming.lock_running_campaign(session, campaign["id"])
            assert isinstance(locked, claiming.Claimable)
            await store.expire_waiting(session, locked.campaign, datetime.now(UTC))
    assert await a_sender(service).send(replace(jobs[0], dial_at=datetime.now(UTC))) is False

    rows = await recipients(tenant, campaign["id"])
    assert {r["status"] for r in rows.values()} == {status}
    assert {r["status_reason"] for r in rows.values()} == {reason}
    done = await tenant.ok("GET", f"/campaign/{campaign['id']}")
    assert done["status"] == "completed"
    counts = done["counts"]
    assert counts[status] == 2 and counts["dialing"] == counts["pending"] == 0
    assert counts["calls_placed"] == counts["calls_active"] == 0
    assert (await service.observed())["created"] == 0
