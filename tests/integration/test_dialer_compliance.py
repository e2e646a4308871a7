"""The dialer asks what the account asked it to: the do-not-call list, the daily cap per
number, the pre-dial check; and it tells the account's webhooks what happened."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.claiming import a_sender, claimed_for_later, recipients, waiting_for_the_window
from tests.conftest import POSTGRES_URL
from tests.dialing import (
    FAST,
    HUMANS_ONLY,
    Service,
    campaign_when,
    fresh_database,
    running_service,
    wait_for,
)
from tests.receiver import Answer, documented_verify, receiving
from tests.support import Tenant, numbers


async def dialed(tenant: Tenant, campaign_id: str) -> list[str]:
    """Numbers whose calls reached the carrier (a dial given back is a `canceled` call row)."""
    calls = await tenant.ok("GET", "/calls", params={"campaign_id": campaign_id})
    return sorted(c["to_number"] for c in calls if c["provider_call_sid"])


async def test_a_number_on_the_do_not_call_list_is_skipped_and_never_dialed(
    service: Service,
) -> None:
    await service.scenario(**HUMANS_ONLY, **FAST)
    tenant = await service.tenant()
    listed, free = numbers(2)
    await tenant.ok("POST", "/do-not-call", json={"phone_number": listed, "reason": "asked"})
    campaign = await tenant.campaign(recipients=[{"phone_number": n} for n in (listed, free)])
    await tenant.ok("POST", f"/campaign/{campaign['id']}/start")

    done = await campaign_when(tenant, campaign["id"], lambda c: c["status"] == "completed")
    assert done["counts"]["skipped"] == 1 and done["counts"]["completed"] == 1
    assert done["counts"]["calls_placed"] == 1
    rows = await recipients(tenant, campaign["id"])
    assert rows[listed]["status"] == "skipped" and rows[listed]["status_reason"] == "dnc"
    assert rows[listed]["attempts"] == 0 and rows[listed]["last_call_id"] is None
    assert await dialed(tenant, campaign["id"]) == [free]
    assert (await service.observed())["created"] == 1


async def test_a_number_listed_after_its_claim_is_not_dialed(service: Service) -> None:
    """The list is checked again at the moment of the dial: a number put on it between the
    claim and the dial (up to the pacing horizon) is skipped, not called."""
    tenant, campaign, _ = await waiting_for_the_window(service, 1)
    jobs = await claimed_for_later(service, campaign["id"])
    assert len(jobs) == 1
    await tenant.ok("POST", "/do-not-call", json={"phone_number": jobs[0].to_number})
    # (Its window left out: the job was claimed for a moment inside it, two hours on.)
    now_inside = replace(jobs[0], dial_at=datetime.now(UTC), window=None)
    assert await a_sender(service).send(now_inside) is False

    row = (await recipients(tenant, campaign["id"]))[jobs[0].to_number]
    assert row["status"] == "skipped" and row["status_reason"] == "dnc"
    assert row["attempts"] == 0
    call = await tenant.ok("GET", f"/calls/{jobs[0].call_id}")
    assert call["status"] == "canceled" and call["ended_reason"] == "dnc"
    done = await campaign_when(tenant, campaign["id"], lambda c: c["status"] == "completed")
    assert done["counts"]["skipped"] == 1 and done["counts"]["calls_placed"] == 0
    assert (await service.observed())["created"] == 0


async def test_the_daily_cap_holds_a_number_until_its_oldest_call_is_a_day_old(
    backend: str, tmp_path: Path
) -> None:
    async with (
        fresh_database(backend, tmp_path, POSTGRES_URL) as url,
        running_service(url, tmp_path / "data", max_calls_per_number_per_day=1) as service,
    ):
        await service.scenario(**HUMANS_ONLY, **FAST)
        tenant = await service.tenant()
        (number,) = numbers(1)
        first = await tenant.campaign(recipients=[{"phone_number": number}])
        await tenant.ok("POST", f"/campaign/{first['id']}/start")
        await campaign_when(tenant, first["id"], lambda c: c["status"] == "completed")
        (call,) = await tenant.ok("GET", "/calls", params={"campaign_id": first["id"]})

        second = await tenant.campaign(
            assistant_id=first["assistant_id"],
            phone_number_id=first["phone_number_id"],
            recipients=[{"phone_number": number}],
        )
        await tenant.ok("POST", f"/campaign/{second['id']}/start")

        async def held() -> Any:
            row = (await recipients(tenant, second["id"]))[number]
            return row if row["next_attempt_at"] else None

        row = await wait_for(held)
        assert row["status"] == "pending" and row["attempts"] == 0
        assert "daily cap" in row["status_reason"]
        frees = datetime.fromisoformat(row["next_attempt_at"])
        placed = datetime.fromisoformat(call["created_at"])
        assert abs(frees - (placed + timedelta(hours=24))) < timedelta(seconds=1)
        assert (await service.observed())["created"] == 1
        assert await dialed(tenant, second["id"]) == []


async def test_the_pre_dial_check_is_asked_before_each_dial_and_can_skip(
    service: Service,
) -> None:
    await service.scenario(**HUMANS_ONLY, **FAST)
    tenant = await service.tenant()
    first, second = numbers(2)
    answers = (Answer.json({"allow": True}), Answer.json({"allow": False, "reason": "paid"}))
    async with receiving(*answers) as receiver:
        check = await tenant.ok("PUT", "/pre-dial-check", json={"url": receiver.url})
        campaign = await tenant.campaign(
            max_concurrency=1,
            recipients=[
                {"phone_number": first, "metadata": {"name": "Ann"}},
                {"phone_number": second},
            ],
        )
        await tenant.ok("POST", f"/campaign/{campaign['id']}/start")
        done = await campaign_when(tenant, campaign["id"], lambda c: c["status"] == "completed")

    asked = [request.json() for request in receiver.received]
    assert [q["phone_number"] for q in asked] == [first, second]
    assert asked[0]["campaign_id"] == campaign["id"] and asked[0]["metadata"] == {"name": "Ann"}
    assert asked[0]["attempt"] == 1 and asked[0]["call_id"].startswith("call_")
    verify = documented_verify()
    assert all(
        verify(check["secret"], r.body, r.headers["x-outdial-signature"]) for r in receiver.received
    )
    assert done["counts"]["completed"] == 1 and done["counts"]["skipped"] == 1
    assert done["counts"]["calls_placed"] == 1
    rows = await recipients(tenant, campaign["id"])
    assert rows[second]["status"] == "skipped" and rows[second]["status_reason"] == "pre_dial: paid"
    assert rows[second]["attempts"] == 0
    assert await dialed(tenant, campaign["id"]) == [first]
    assert (await service.observed())["created"] == 1


async def test_an_unanswered_pre_dial_check_skips_the_dial(service: Service) -> None:
    await service.scenario(**HUMANS_ONLY, **FAST)
    tenant = await service.tenant()
    async with receiving(Answer(hang=True)) as receiver:
        await tenant.ok(
            "PUT", "/pre-dial-check", json={"url": receiver.url, "timeout_seconds": 0.5}
        )
        campaign = await tenant.campaign(recipients=[{"phone_number": n} for n in numbers(1)])
        await tenant.ok("POST", f"/campaign/{campaign['id']}/start")
        done = await campaign_when(tenant, campaign["id"], lambda c: c["status"] == "completed")
    assert done["counts"]["skipped"] == 1 and done["counts"]["calls_placed"] == 0
    (row,) = (await recipients(tenant, campaign["id"])).values()
    assert row["status_reason"] == "pre_dial_check_failed: no answer within 0.5 s"
    assert (await service.observed())["created"] == 0


async def test_the_dialer_tells_the_accounts_webhooks_what_happened(service: Service) -> None:
    await service.scenario(**HUMANS_ONLY, **FAST)
    tenant = await service.tenant()
    listed, number = numbers(2)
    await tenant.ok("POST", "/do-not-call", json={"phone_number": listed})
    async with receiving() as receiver:
        hook = await tenant.ok("POST", "/webhooks", json={"url": receiver.url})
        campaign = await tenant.campaign(recipients=[{"phone_number": n} for n in (listed, number)])
        await tenant.ok("POST", f"/campaign/{campaign['id']}/start")
        await campaign_when(tenant, campaign["id"], lambda c: c["status"] == "completed")

        async def all_six() -> Any:
            return len(receiver.received) >= 6 and receiver.received

        received = await wait_for(all_six)
    verify = documented_verify()
    assert all(verify(hook["secret"], r.body, r.headers["x-outdial-signature"]) for r in received)
    events = [r.json() for r in received]
    kinds = sorted(e["type"] for e in events)
    assert kinds == sorted(
        [
            "campaign.started",
            "recipient.final",  # the listed number, skipped at the claim
            "call.started",
            "call.ended",
            "recipient.final",  # the called number, completed
            "campaign.completed",
        ]
    )
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by_kind.setdefault(event["type"], []).append(event["data"])
    finals = {d["phone_number"]: d for d in by_kind["recipient.final"]}
    assert finals[listed]["status"] == "skipped" and finals[number]["status"] == "completed"
    (ended,) = by_kind["call.ended"]
    assert ended["to_number"] == number and ended["outcome"] == "completed"
    assert by_kind["call.started"][0]["call_id"] == ended["call_id"]
