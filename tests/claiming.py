"""Claiming ahead of the dialer, for tests that need a claimed dial in hand: a campaign whose
calling window opens later (so the dialer leaves it alone), claimed as the dialer would inside
that window, and a sender to put the claimed dial through the gate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from outdial.database import write_transaction
from outdial.dialer import claim as claiming
from outdial.dialer.sender import Sender
from outdial.dialer.worker import dialer_settings
from tests.dialing import FAST, HUMANS_ONLY, Service, wait_for
from tests.support import Tenant, numbers


def clock(instant: datetime) -> str:
    return instant.strftime("%H:%M")


def window_around(zone: str, before: timedelta, after: timedelta) -> dict[str, str]:
    """A daily window on `zone`'s clock that holds from now - before to now + after."""
    local = datetime.now(ZoneInfo(zone))
    return {"start": clock(local - before), "end": clock(local + after)}


async def recipients(tenant: Tenant, campaign_id: str) -> dict[str, dict[str, Any]]:
    rows = await tenant.ok("GET", f"/campaign/{campaign_id}/recipients")
    return {row["phone_number"]: row for row in rows}


async def waiting_for_the_window(
    service: Service,
    count: int,
    tenant: Tenant | None = None,
    first: int = 0,
    **fields: Any,
) -> tuple[Tenant, dict[str, Any], dict[str, dict[str, Any]]]:
    """A started campaign whose window (UTC) opens in two hours, once every one of its
    `count` recipients (`numbers(count, first)`) has been put off to it: nobody is dialed
    meanwhile. A new tenant unless one is given."""
    await service.scenario(**HUMANS_ONLY, **FAST)
    tenant = tenant or await service.tenant()
    hours = {
        **window_around("UTC", -timedelta(hours=2), timedelta(hours=3)),
        "timezone": "UTC",
    }
    people = [{"phone_number": n} for n in numbers(count, first)]
    campaign = await tenant.campaign(calling_hours=hours, recipients=people, **fields)
    await tenant.ok("POST", f"/campaign/{campaign['id']}/start")

    async def all_put_off() -> Any:
        rows = await recipients(tenant, campaign["id"])
        ready = len(rows) == count and all(r["next_attempt_at"] for r in rows.values())
        return rows if ready else None

    return tenant, campaign, await wait_for(all_put_off)


async def claimed_for_later(service: Service, campaign_id: str) -> list[Any]:
    """Claim as the dialer would two and a half hours from now, inside the window."""
    later = datetime.now(UTC) + timedelta(hours=2, minutes=30)
    async with write_transaction(service.app.state.sessionmaker) as session:
        locked = await claiming.lock_running_campaign(session, campaign_id)
        assert isinstance(locked, claiming.Claimable)
        secrets = service.app.state.carriers.call_secrets
        taken = await claiming.claim(session, locked, "test", later, timedelta(seconds=30), secrets)
    return taken.jobs


def a_sender(service: Service) -> Sender:
    app = service.app
    return Sender(app.state.sessionmaker, app.state.carriers, dialer_settings(app.state.settings))
