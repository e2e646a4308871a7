"""The dialer end to end on one server: real HTTP between the simulator and the webhooks."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select, update
from tests.claiming import a_sender, claimed_for_later, waiting_for_the_window, window_around
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
from tests.support import Tenant, numbers, pool_timeout_once

from outdial.campaign import lifecycle
from outdial.campaign.state import RECIPIENT_FINAL
from outdial.database import create_engine, create_sessionmaker, write_transaction
from outdial.dialer import claim as claiming
from outdial.dialer import reaper, sender
from outdial.models import Call, Campaign, CampaignRecipient, PhoneNumber
from outdial.models.base import utcnow
from outdial.models.call import LIVE_STATUSES


async def campaign_of(tenant: Tenant, count: int, **fields: Any) -> dict[str, Any]:
    recipients = [{"phone_number": n} for n in numbers(count)]
    if "phone_number_id" not in fields:
        fields["phone_number_id"] = (await tenant.phone_number(calls_per_second=100))["id"]
    campaign = await tenant.campaign(recipients=recipients, **fields)
    return await tenant.ok("POST", f"/campaign/{campaign['id']}/start")


async def campaigns_on_both(tenant: Tenant, count: int) -> list[dict[str, Any]]:
    """Two started campaigns of `count` recipients each: one on Twilio, one on Vobiz."""
    vobiz = await tenant.phone_number("+919876543210", provider="vobiz", calls_per_second=50)
    indian = [{"phone_number": f"+9198765{i:05d}"} for i in range(count)]
    on_vobiz = await tenant.campaign(
        recipients=indian, max_concurrency=count, channel="vobiz", phone_number_id=vobiz["id"]
    )
    return [
        await campaign_of(tenant, count, max_concurrency=count),
        await tenant.ok("POST", f"/campaign/{on_vobiz['id']}/start"),
    ]


async def vobiz_campaign(tenant: Tenant, count: int, **fields: Any) -> dict[str, Any]:
    """A started campaign of `count` Indian recipients on a Vobiz caller number."""
    number = await tenant.phone_number("+919876543210", provider="vobiz", calls_per_second=50)
    people = [{"phone_number": f"+9198765{i:05d}"} for i in range(count)]
    campaign = await tenant.campaign(
        recipients=people, channel="vobiz", phone_number_id=number["id"], **fields
    )
    return dict(await tenant.ok("POST", f"/campaign/{campaign['id']}/start"))


async def finished(tenant: Tenant, campaign_id: str) -> Any:
    return await campaign_when(tenant, campaign_id, lambda c: c["status"] == "completed", 60)


async def all_recipients(tenant: Tenant, campaign_id: str) -> list[dict[str, Any]]:
    return list(
        await tenant.ok("GET", f"/campaign/{campaign_id}/recipients", params={"limit": 500})
    )


async def retries_scheduled(tenant: Tenant, campaign_id: str) -> list[dict[str, Any]]:
    """The campaign's recipients, once every one of them waits for a retry."""

    async def all_waiting() -> Any:
        people = await all_recipients(tenant, campaign_id)
        return people if all(p["status"] == "retry_scheduled" for p in people) else None

    return list(await wait_for(all_waiting))


async def given_back(tenant: Tenant, campaign_id: str) -> dict[str, Any]:
    """The campaign's one call, once it has been given back (`canceled`) without a dial."""

    async def canceled() -> Any:
        calls = await tenant.ok("GET", "/calls", params={"campaign_id": campaign_id})
        return calls if calls and calls[0]["status"] == "canceled" else None

    (call,) = await wait_for(canceled, timeout=20)
    return dict(call)


async def test_a_campaign_dials_everyone_within_its_concurrency(service: Service) -> None:
    await service.scenario(human=1, machine=1, no_answer=1, busy=1, failed=1, seed=7)
    tenant = await service.tenant()
    campaign = await campaign_of(tenant, 24, max_concurrency=3)
    done = await finished(tenant, campaign["id"])
    counts = done["counts"]
    assert done["ended_reason"] == "all_recipients_done"
    assert counts["total"] == 24
    assert sum(counts[s] for s in RECIPIENT_FINAL) == 24
    assert counts["calls_placed"] == 24 and counts["calls_active"] == 0
    seen = await service.observed()
    assert seen["created"] == 24
    assert max(seen["peak_by_from"].values()) <= 3
    assert seen["overlaps"] == []
    people = await all_recipients(tenant, campaign["id"])
    assert all(p["status"] in RECIPIENT_FINAL and p["attempts"] == 1 for p in people)
    calls = await tenant.ok("GET", "/calls", params={"campaign_id": campaign["id"], "limit": 100})
    assert sorted(c["to_number"] for c in calls) == sorted(p["phone_number"] for p in people)
    assert all(c["ended_at"] and c["provider_call_sid"] for c in calls)


async def test_machine_answers_are_voicemail_and_humans_completed(service: Service) -> None:
    await service.scenario(human=1, machine=1, no_answer=0, busy=0, failed=0, seed=3)
    tenant = await service.tenant()
    campaign = await campaign_of(tenant, 10, max_concurrency=5)
    await finished(tenant, campaign["id"])
    calls = await tenant.ok("GET", "/calls", params={"campaign_id": campaign["id"]})
    people = {p["last_call_id"]: p for p in await all_recipients(tenant, campaign["id"])}
    for call in calls:
        expected = "voicemail" if call["answered_by"] == "machine" else "completed"
        assert people[call["id"]]["status"] == expected, call


async def test_duplicated_and_reordered_callbacks_change_nothing(service: Service) -> None:
    await service.scenario(duplicate_rate=0.6, reorder_rate=0.6, seed=11)
    tenant = await service.tenant()
    campaign = await campaign_of(tenant, 20, max_concurrency=4)
    done = await finished(tenant, campaign["id"])
    assert sum(done["counts"][s] for s in RECIPIENT_FINAL) == 20
    assert done["counts"]["calls_placed"] == 20
    assert max((await service.observed())["peak_by_from"].values()) <= 4


async def test_a_failed_attempt_is_retried_no_earlier_than_its_delay(service: Service) -> None:
    await service.scenario(human=0, machine=0, no_answer=1, busy=0, failed=0)
    tenant = await service.tenant()
    policy = {"max_attempts": 2, "retry_on": ["no_answer"], "delays_seconds": [60]}
    campaign = await campaign_of(tenant, 2, retry_policy=policy)

    people = await retries_scheduled(tenant, campaign["id"])
    calls = await tenant.ok("GET", "/calls", params={"campaign_id": campaign["id"]})
    ended = {c["id"]: c["ended_at"] for c in calls}
    for person in people:
        assert person["attempts"] == 1 and person["last_outcome"] == "no_answer"
        assert person["next_attempt_at"] >= ended[person["last_call_id"]][:19]
    assert (await service.observed())["created"] == 2


@pytest.mark.parametrize(
    ("edit", "retried"),
    [
        ({"max_attempts": 1, "retry_on": ["no_answer"], "delays_seconds": [3600]}, False),
        ({"max_attempts": 3, "retry_on": ["busy"], "delays_seconds": [3600]}, False),
        ({"max_attempts": 3, "retry_on": ["no_answer"], "delays_seconds": [60]}, True),
    ],
    ids=["fewer_attempts", "outcome_dropped", "delays_only"],
)
async def test_a_retry_policy_edit_applies_to_retries_already_scheduled(
    service: Service, edit: dict[str, Any], retried: bool
) -> None:
    """Changes to a running campaign apply to its next dial: a retry already scheduled that
    the edited policy no longer allows is not dialed; the recipient ends with its last
    outcome at once, and the campaign completes when nobody else is left."""
    await service.scenario(human=0, machine=0, no_answer=1, busy=0, failed=0)
    tenant = await service.tenant()
    policy = {"max_attempts": 3, "retry_on": ["no_answer"], "delays_seconds": [3600]}
    campaign = await campaign_of(tenant, 2, retry_policy=policy)

    await retries_scheduled(tenant, campaign["id"])
    edited = await tenant.ok("PATCH", f"/campaign/{campaign['id']}", json={"retry_policy": edit})
    people = await all_recipients(tenant, campaign["id"])
    if retried:
        assert edited["status"] == "running" and edited["counts"]["retry_scheduled"] == 2
        assert all(p["status"] == "retry_scheduled" and p["next_attempt_at"] for p in people)
    else:
        assert edited["status"] == "completed"
        assert edited["counts"]["retry_scheduled"] == 0 and edited["counts"]["no_answer"] == 2
        for person in people:
            assert person["status"] == "no_answer" and person["attempts"] == 1
            assert person["next_attempt_at"] is None
            assert "retry policy" in person["status_reason"]
    assert (await service.observed())["created"] == 2


@pytest.mark.parametrize("provider", ["twilio", "vobiz"])
async def test_a_number_that_does_not_exist_is_never_retried(
    service: Service, provider: str
) -> None:
    """Twilio refuses the dial of a number that does not exist (21211); Vobiz places it and
    hangs up with an unallocated cause. Either way the recipient ends `failed` after one
    attempt though the policy retries failures; a failure of another kind is retried."""
    tenant = await service.tenant()
    if provider == "vobiz":
        number = await tenant.phone_number("+919876543210", provider="vobiz", calls_per_second=50)
        people = ["+919876500001", "+919876500002"]
        fields = {"channel": "vobiz", "phone_number_id": number["id"]}
    else:
        people, fields = numbers(2), {}
    missing, reachable = people
    await service.scenario(
        human=0, machine=0, no_answer=0, busy=0, failed=1, invalid_numbers=[missing]
    )
    policy = {"max_attempts": 3, "retry_on": ["failed"], "delays_seconds": [3600]}
    campaign = await tenant.campaign(
        recipients=[{"phone_number": n} for n in people], retry_policy=policy, **fields
    )
    await tenant.ok("POST", f"/campaign/{campaign['id']}/start")

    async def settled() -> Any:
        found = {p["phone_number"]: p for p in await all_recipients(tenant, campaign["id"])}
        waiting = ("pending", "dialing", "in_progress")
        return found if not any(p["status"] in waiting for p in found.values()) else None

    found = await wait_for(settled)
    assert found[missing]["status"] == "failed" and found[missing]["attempts"] == 1
    assert found[missing]["next_attempt_at"] is None
    assert found[reachable]["status"] == "retry_scheduled"
    calls = await tenant.ok("GET", "/calls", params={"campaign_id": campaign["id"]})
    reasons = {c["to_number"]: c["ended_reason"] for c in calls}
    assert reasons[missing] == "invalid_number" and reasons[reachable] != "invalid_number"


async def test_nobody_is_dialed_before_the_schedule_starts(service: Service) -> None:
    """A started campaign whose `scheduleStartTime` is ahead dials nobody until then (the
    dialer sweeps it every second meanwhile), and everyone after."""
    await service.scenario(**HUMANS_ONLY, **FAST)
    tenant = await service.tenant()
    start = datetime.now(UTC) + timedelta(seconds=3)
    campaign = await campaign_of(
        tenant, 4, max_concurrency=4, schedule_start_time=start.isoformat()
    )
    await asyncio.sleep(2)
    assert (await service.observed())["created"] == 0
    assert (await finished(tenant, campaign["id"]))["counts"]["completed"] == 4
    calls = await tenant.ok("GET", "/calls", params={"campaign_id": campaign["id"]})
    assert len(calls) == 4
    assert all(datetime.fromisoformat(c["created_at"]) >= start for c in calls)


async def test_pause_stops_new_dials_at_once(service: Service) -> None:
    await service.scenario(ring_seconds=[0.3, 0.6], talk_seconds=[0.3, 0.6])
    tenant = await service.tenant()
    slow = await tenant.phone_number(calls_per_second=2)
    campaign = await campaign_of(tenant, 40, max_concurrency=4, phone_number_id=slow["id"])
    await wait_for(lambda: _placed_at_least(service, 4))
    await tenant.ok("POST", f"/campaign/{campaign['id']}/pause")
    placed_when_paused = (await service.observed())["created"]
    await wait_for(lambda: _no_live_calls(service), timeout=20)
    assert (await service.observed())["created"] == placed_when_paused

    paused = await campaign_when(tenant, campaign["id"], lambda c: c["counts"]["calls_active"] == 0)
    assert paused["status"] == "paused"
    assert paused["counts"]["calls_placed"] == placed_when_paused
    assert paused["counts"]["pending"] == 40 - placed_when_paused


async def test_a_dial_at_its_gate_as_a_pause_is_written_is_not_placed(
    service: Service, backend: str
) -> None:
    """The gate and a pause meet on the campaign's row: a dial that reaches its gate while a
    pause is being written waits for it and is refused, so the pause's wait for dials on
    their way to the provider (`control.settle`) cannot miss one the pause let through."""
    if backend != "postgresql":
        pytest.skip("row locks are PostgreSQL's (SQLite writes one at a time)")
    tenant, campaign, _ = await waiting_for_the_window(service, 1)
    (job,) = await claimed_for_later(service, campaign["id"])
    job = replace(job, dial_at=datetime.now(UTC), window=None)  # its moment, now
    async with write_transaction(service.app.state.sessionmaker) as pausing:
        await lifecycle.pause(pausing, tenant.user_id, campaign["id"])
        await pausing.flush()
        sending = asyncio.ensure_future(a_sender(service).send(job))
        await asyncio.sleep(0.5)
        assert not sending.done()  # the gate waits for the pause being written
    assert await asyncio.wait_for(sending, 10) is False
    call = await tenant.ok("GET", f"/calls/{job.call_id}")
    assert call["status"] == "canceled" and call["ended_reason"] == "campaign_not_running"
    paused = await tenant.ok("GET", f"/campaign/{campaign['id']}")
    assert paused["status"] == "paused" and paused["counts"]["calls_placed"] == 0
    assert paused["counts"]["pending"] == 1
    assert (await service.observed())["created"] == 0


async def test_a_dial_backing_off_is_not_sent_again_once_paused(service: Service) -> None:
    """A dial the provider answered with 429 waits and is sent again, unless the campaign
    was paused meanwhile: the gate's checks run again before each send, and the attempt,
    never placed, is given back."""
    await service.scenario(**HUMANS_ONLY, rate_limit_rate=1.0)
    tenant = await service.tenant()
    campaign = await campaign_of(tenant, 1)
    await wait_for(lambda: _refused_at_least(service, 1))
    await tenant.ok("POST", f"/campaign/{campaign['id']}/pause")
    refused = (await service.observed())["rate_limited"]
    call = await given_back(tenant, campaign["id"])
    assert call["ended_reason"] == "campaign_not_running"
    (person,) = await all_recipients(tenant, campaign["id"])
    assert person["status"] == "pending" and person["attempts"] == 0
    await asyncio.sleep(2)  # longer than the first back-offs: no send comes after all
    seen = await service.observed()
    assert seen["rate_limited"] == refused and seen["created"] == 0
    paused = await tenant.ok("GET", f"/campaign/{campaign['id']}")
    assert paused["status"] == "paused" and paused["counts"]["calls_placed"] == 0


async def test_a_dial_backing_off_keeps_to_calling_hours_edited_meanwhile(
    service: Service,
) -> None:
    """The checks before a dial is sent again read the campaign's calling hours as they are
    then: hours edited during the back-off so that they no longer hold stop the dial, and
    the attempt, never placed, is given back."""
    await service.scenario(**HUMANS_ONLY, rate_limit_rate=1.0)
    tenant = await service.tenant()
    now_open = {**window_around("UTC", timedelta(hours=1), timedelta(hours=1)), "timezone": "UTC"}
    campaign = await campaign_of(tenant, 1, calling_hours=now_open)
    await wait_for(lambda: _refused_at_least(service, 1))
    later = {**window_around("UTC", -timedelta(hours=2), timedelta(hours=3)), "timezone": "UTC"}
    await tenant.ok("PATCH", f"/campaign/{campaign['id']}", json={"calling_hours": later})
    call = await given_back(tenant, campaign["id"])
    assert call["ended_reason"] == "outside_calling_hours"
    (person,) = await all_recipients(tenant, campaign["id"])
    assert person["status"] == "pending" and person["attempts"] == 0
    assert (await service.observed())["created"] == 0


async def test_a_placed_dial_never_heard_of_is_found_in_the_providers_list(
    service: Service,
) -> None:
    """The provider placed the call but answered 500 and none of its callbacks arrive: the
    dialer finds the call in the provider's list of calls (Twilio's `Calls.json`, Vobiz's
    live calls) and goes on with it as placed, its id recorded; the person is not rung
    again (before: sent again 2 s after the error, since no callback had come)."""
    ringing = {**HUMANS_ONLY, "human": 0, "no_answer": 1, "ring_seconds": [30, 30]}
    await service.scenario(**ringing, lost_response_rate=1.0, drop_rate=1.0)
    tenant = await service.tenant()
    started = await campaigns_on_both(tenant, 1)

    async def recorded() -> Any:
        found = []
        for campaign in started:
            calls = await tenant.ok("GET", "/calls", params={"campaign_id": campaign["id"]})
            found += [c for c in calls if c["provider_call_sid"]]
        return found if len(found) == 2 else None

    calls = await wait_for(recorded, timeout=20)
    assert {c["provider"] for c in calls} == {"twilio", "vobiz"}
    assert all(c["status"] in LIVE_STATUSES for c in calls)
    await asyncio.sleep(3)  # past the next back-off: no second send
    seen = await service.observed()
    assert seen["lost_responses"] == seen["created"] == 2 and seen["lookups"] >= 2
    assert set(seen["dials_by_to"].values()) == {1}


@pytest.mark.parametrize("at_first", ["answers", "cannot_say"])
async def test_the_reaper_finds_the_call_of_a_dial_whose_sender_died(
    service: Service, at_first: str
) -> None:
    """A worker died between sending a dial and hearing the provider, and the call's
    callbacks are lost: a minute past its lease the reaper asks the provider, finds the call
    in its list and keeps it live with its id (before: ended `lost`, its slot freed while
    the person's phone rang). A provider that cannot say at first is asked again."""
    tenant, campaign, _ = await waiting_for_the_window(service, 1)
    (job,) = await claimed_for_later(service, campaign["id"])
    ringing = {**HUMANS_ONLY, "human": 0, "no_answer": 1, "ring_seconds": [30, 30]}
    cannot_say = {"lookup_error_rate": 1.0} if at_first == "cannot_say" else {}
    await service.scenario(**ringing, drop_rate=1.0, **cannot_say)
    request = a_sender(service)._dial_request(job)
    sid = await service.app.state.carriers.for_number(job.number).dial(request)
    long_ago = datetime.now(UTC) - timedelta(seconds=90)  # past lease and patience
    async with write_transaction(service.app.state.sessionmaker) as session:
        await session.execute(
            update(Call)
            .where(Call.id == job.call_id)
            .values(dial_started_at=long_ago, lease_expires_at=long_ago)
        )

    async def recorded() -> Any:
        call = await tenant.ok("GET", f"/calls/{job.call_id}")
        return call if call["provider_call_sid"] or call["status"] != "queued" else None

    if cannot_say:
        await wait_for(lambda: _looked_up_at_least(service, 3), timeout=15)
        assert not await recorded()  # still waiting, neither found nor `lost`
        await service.scenario(**ringing, drop_rate=1.0)
    call = await wait_for(recorded, timeout=15)
    assert call["provider_call_sid"] == sid and call["status"] in LIVE_STATUSES
    counted = await tenant.ok("GET", f"/campaign/{campaign['id']}")
    assert counted["counts"]["calls_active"] == 1
    assert (await service.observed())["created"] == 1


RINGING_ON = {**HUMANS_ONLY, "human": 0, "no_answer": 1, "ring_seconds": [600, 600]}
SILENT_SINCE = timedelta(minutes=10)  # past the ringing patience


async def for_the_reaper(service: Service, waiting: str, accounts: int = 2) -> dict[str, str]:
    """Two calls of each of `accounts` provider accounts (one user's caller numbers) for the
    reaper: ringing calls silent for ten minutes, or dials whose worker died before hearing
    the provider (90 s ago: past their lease and patience, not three times it). Our call id
    → the provider's."""
    app = service.app
    placed: dict[str, str] = {}
    tenant = await service.tenant()
    for account in range(accounts):  # each its own account, caller number and people
        number = await tenant.phone_number(f"+1415555012{account}", account_sid=f"AC{account:032x}")
        _, campaign, _ = await waiting_for_the_window(
            service, 2, tenant, first=2 * account, phone_number_id=number["id"]
        )
        await service.scenario(**RINGING_ON, drop_rate=1.0)
        for job in await claimed_for_later(service, campaign["id"]):
            request = a_sender(service)._dial_request(job)
            placed[job.call_id] = await app.state.carriers.for_number(job.number).dial(request)
    assert len(placed) == 2 * accounts
    silent_since = datetime.now(UTC) - SILENT_SINCE
    sent_at = datetime.now(UTC) - timedelta(seconds=90)
    async with write_transaction(app.state.sessionmaker) as session:
        for call_id, sid in placed.items():
            if waiting == "silent":
                values: dict[str, Any] = {
                    "status": "ringing",
                    "provider_call_sid": sid,
                    "last_event_at": silent_since,
                    "lease_expires_at": None,
                }
            else:
                values = {"dial_started_at": sent_at, "lease_expires_at": sent_at}
            await session.execute(update(Call).where(Call.id == call_id).values(**values))
    return placed


@pytest.mark.parametrize("waiting", ["silent", "unconfirmed"])
async def test_a_provider_account_that_cannot_answer_is_asked_once_a_round(
    backend: str, tmp_path: Path, waiting: str
) -> None:
    """The provider answers no question (every list and fetch a 500) while two of its
    accounts, one user's two caller numbers, have two calls each for the reaper (ringing
    calls silent for ten minutes, or dials whose worker died before hearing the provider):
    a round asks each account once, not once a call (each question to a provider that is
    down can take the requests' timeouts, 15 s each, and the round's schedule ends and
    completions wait behind them). Nothing is ended for it; the next round, the provider
    answering again, asks about the rest."""
    async with (
        fresh_database(backend, tmp_path, POSTGRES_URL) as url,
        running_service(url, tmp_path / "data", dialer_reap_seconds=3600) as service,
    ):
        app = service.app
        ringing = RINGING_ON
        placed = await for_the_reaper(service, waiting)
        silent_since = datetime.now(UTC) - SILENT_SINCE

        async def calls() -> list[Any]:
            async with app.state.sessionmaker() as session:
                query = select(
                    Call.id,
                    Call.phone_number_id,
                    Call.status,
                    Call.last_event_at,
                    Call.provider_call_sid,
                )
                return list((await session.execute(query.where(Call.id.in_(placed)))).all())

        async def one_round() -> int:
            before = (await service.observed())["lookups"]
            await reaper.reap(app.state.sessionmaker, app.state.carriers, utcnow())
            return int((await service.observed())["lookups"] - before)

        def asked(last: datetime | None) -> bool:  # (a silent call answered for waits again)
            return last is not None and last > silent_since + timedelta(minutes=5)

        await service.scenario(**ringing, drop_rate=1.0, lookup_error_rate=1.0)
        assert await one_round() == 2  # one question an account
        rows = await calls()
        if waiting == "silent":
            assert {status for _, _, status, _, _ in rows} == {"ringing"}
            postponed = Counter(number for _, number, _, last, _ in rows if asked(last))
            assert len(postponed) == 2 and set(postponed.values()) == {1}
        else:
            assert {(status, sid) for _, _, status, _, sid in rows} == {("queued", None)}

        await service.scenario(**ringing, drop_rate=1.0)  # the provider answers again
        if waiting == "silent":
            assert await one_round() == 2  # the two left silent
            assert all(asked(last) for *_, last, _ in await calls())
        else:
            assert await one_round() == 4  # every dial, each found in the provider's list
            assert {call_id: sid for call_id, *_, sid in await calls()} == placed


@pytest.mark.parametrize("waiting", ["silent", "unconfirmed"])
async def test_a_round_asks_its_provider_accounts_side_by_side(
    backend: str, tmp_path: Path, waiting: str
) -> None:
    """Three accounts with two calls each for the reaper, and a provider slow to answer
    (each list and fetch takes half a second): a round asks the accounts at the same time,
    the calls of one account one after another: three questions at once at most, never
    more (before: one at a time, so a provider that is down cost one timeout per account
    in every round)."""
    async with (
        fresh_database(backend, tmp_path, POSTGRES_URL) as url,
        running_service(url, tmp_path / "data", dialer_reap_seconds=3600) as service,
    ):
        placed = await for_the_reaper(service, waiting, accounts=3)
        await service.scenario(**RINGING_ON, drop_rate=1.0, lookup_delay_seconds=0.5)
        await reaper.reap(service.app.state.sessionmaker, service.app.state.carriers, utcnow())
        seen = await service.observed()
        assert seen["lookups_at_once"] == 3
        if waiting == "silent":
            assert seen["lookups"] == 6  # each call fetched once
        async with service.app.state.sessionmaker() as session:
            query = select(Call.id, Call.provider_call_sid).where(Call.id.in_(placed))
            rows = {call_id: sid for call_id, sid in (await session.execute(query)).all()}
        assert rows == placed  # (the unconfirmed dials, each found in its account's list)


@pytest.mark.parametrize("sealed", ["with another key", "without a token"])
async def test_credentials_that_cannot_be_read_do_not_stop_the_reaper(
    backend: str, tmp_path: Path, sealed: str
) -> None:
    """A caller number whose credentials were sealed with another secret key (a key changed
    without re-entering them), or hold no token: the reaper cannot ask about its silent
    calls, and takes that as the provider's refusal of the question, not as the end of the
    round: the schedule ends and completions after it still happen. (Before, the error ended
    every round there.) A call dialed ten minutes ago is asked about again after its
    patience; one dialed 25 hours ago, longer than any provider keeps a call up, is over
    however it ended: `lost`, its slot freed (before, a refused question kept it live for
    ever)."""
    async with (
        fresh_database(backend, tmp_path, POSTGRES_URL) as url,
        running_service(url, tmp_path / "data", dialer_reap_seconds=3600) as service,
    ):
        app = service.app
        tenant, campaign, _ = await waiting_for_the_window(service, 2)
        recent, old = await claimed_for_later(service, campaign["id"])
        now = datetime.now(UTC)
        async with write_transaction(app.state.sessionmaker) as session:
            for job, ago in ((recent, timedelta(minutes=10)), (old, timedelta(hours=25))):
                await session.execute(
                    update(Call)
                    .where(Call.id == job.call_id)
                    .values(
                        status="ringing",
                        provider_call_sid="CA" + job.call_id[-32:].rjust(32, "0"),
                        dial_started_at=now - ago,
                        last_event_at=now - ago,
                        lease_expires_at=None,
                    )
                )
            await session.execute(
                update(PhoneNumber)
                .where(PhoneNumber.id == recent.number.id)
                .values(
                    credentials=Fernet(Fernet.generate_key()).encrypt(b"{}")
                    if sealed == "with another key"
                    else app.state.credential_box.seal({"account_sid": "AC" + "0" * 32})
                )
            )
            await session.execute(
                update(Campaign)
                .where(Campaign.id == campaign["id"])
                .values(schedule_end_time=now - timedelta(minutes=1))
            )
        await reaper.reap(app.state.sessionmaker, app.state.carriers, utcnow())
        waiting = await tenant.ok("GET", f"/calls/{recent.call_id}")
        assert waiting["status"] == "ringing"  # not ended for want of an answer
        async with app.state.sessionmaker() as session:
            query = select(Call.last_event_at).where(Call.id == recent.call_id)
            asked = await session.scalar(query)
        assert asked is not None and asked > now - timedelta(minutes=1)
        over = await tenant.ok("GET", f"/calls/{old.call_id}")
        assert over["status"] == "failed" and over["ended_reason"] == "lost"
        ended = await tenant.ok("GET", f"/campaign/{campaign['id']}")
        assert ended["ended_reason"] == "schedule_ended"
        assert ended["counts"]["calls_active"] == 1


async def test_a_callback_while_the_dial_waits_to_be_sent_again_keeps_the_call(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Answered 500, the call not in the provider's list yet (its reads lag) and its first
    callback late: found neither way, the dial waits to be sent again, and the callback that
    comes meanwhile stops the send. The call goes on as placed (`started_at` recorded, as
    for any sent dial), and nobody is rung twice."""
    monkeypatch.setattr(sender.random, "uniform", lambda _low, high: high)  # back-off 1.5 s
    ringing = {**HUMANS_ONLY, "human": 0, "no_answer": 1, "ring_seconds": [30, 30]}
    late = {"lost_response_rate": 1.0, "listing_lag_seconds": 60, "callback_delay_seconds": 2.75}
    await service.scenario(**ringing, **late)
    tenant = await service.tenant()
    campaign = await campaign_of(tenant, 1)

    async def started() -> Any:
        calls = await tenant.ok("GET", "/calls", params={"campaign_id": campaign["id"]})
        return calls if calls and calls[0]["started_at"] else None

    (call,) = await wait_for(started, timeout=15)
    assert call["status"] in LIVE_STATUSES and call["status"] != "queued"
    await asyncio.sleep(2)  # past the back-off: no second send
    seen = await service.observed()
    assert seen["created"] == 1 and seen["lookups"] >= 1


@pytest.mark.parametrize("provider", ["twilio", "vobiz"])
async def test_a_second_call_placed_for_one_dial_is_hung_up_before_it_is_answered(
    service: Service, monkeypatch: pytest.MonkeyPatch, provider: str
) -> None:
    """Answered 500, the call not in the provider's list yet (its reads lag) and its
    callbacks 6 s late: the dial is sent again, and the provider places that one too. The
    first call's callbacks then make it the call's; the second's, which carry the same call
    id, move nothing and get it hung up while it still rings: the person is not called
    twice (before, both calls were answered, each moving the one call)."""
    monkeypatch.setattr(sender.random, "uniform", lambda _low, high: high)  # back-off 1.5 s
    late = {"lost_response_rate": 1.0, "listing_lag_seconds": 60, "callback_delay_seconds": 6}
    await service.scenario(**HUMANS_ONLY, ring_seconds=[10, 10], talk_seconds=[0.2, 0.2], **late)
    tenant = await service.tenant()
    if provider == "twilio":
        campaign = await campaign_of(tenant, 1)
    else:
        vobiz = await tenant.phone_number("+919876543210", provider="vobiz")
        on_vobiz = await tenant.campaign(
            recipients=[{"phone_number": "+919876500001"}],
            channel="vobiz",
            phone_number_id=vobiz["id"],
        )
        campaign = await tenant.ok("POST", f"/campaign/{on_vobiz['id']}/start")
    done = await finished(tenant, campaign["id"])
    assert done["counts"]["completed"] == 1
    (call,) = await tenant.ok("GET", "/calls", params={"campaign_id": campaign["id"]})
    (person,) = await all_recipients(tenant, campaign["id"])
    assert call["status"] == "completed" and person["attempts"] == 1
    seen = await service.observed()
    assert seen["created"] == 2 and len(seen["overlaps"]) == 1  # placed twice, as before
    second = seen["overlaps"][0]["sid"]
    assert second != call["provider_call_sid"]

    async def over() -> Any:
        details = (await service.http.get(f"/_simulator/_sim/calls/{second}")).json()
        return details if details["state"] not in ("queued", "ringing", "in-progress") else None

    details = await wait_for(over, timeout=15)
    assert details["state"] in ("canceled", "cancel") and details["duration"] == 0
    assert (await service.observed())["live"] == 0


async def test_a_dial_answered_with_a_second_call_hangs_that_call_up(service: Service) -> None:
    """The provider answers a dial with a call id while the call already holds another
    (an earlier send's call, heard of by its callbacks meanwhile): the dial placed a second
    call, which the sender hangs up at once; the call keeps the first."""
    _, campaign, _ = await waiting_for_the_window(service, 1)
    ringing = {**HUMANS_ONLY, "human": 0, "no_answer": 1, "ring_seconds": [30, 30]}
    await service.scenario(**ringing, drop_rate=1.0)  # (no callbacks: the test says what came)
    (job,) = await claimed_for_later(service, campaign["id"])
    dialer = a_sender(service)
    provider = service.app.state.carriers.for_number(job.number)
    first = await provider.dial(dialer._dial_request(job))
    second = await provider.dial(dialer._dial_request(job))
    async with write_transaction(service.app.state.sessionmaker) as session:
        values = {"status": "ringing", "provider_call_sid": first, "dial_started_at": utcnow()}
        await session.execute(update(Call).where(Call.id == job.call_id).values(**values))
    await dialer._dial_sent(job, second)

    async def state(sid: str) -> str:
        return str((await service.http.get(f"/_simulator/_sim/calls/{sid}")).json()["state"])

    assert (await state(first), await state(second)) == ("ringing", "canceled")
    async with service.app.state.sessionmaker() as session:
        call = await session.get(Call, job.call_id)
    assert call is not None and (call.status, call.provider_call_sid) == ("ringing", first)


async def test_a_dial_nobody_can_tell_was_placed_is_not_sent_again(service: Service) -> None:
    """Answered 500, no callback, and the provider's list of calls answers 500 too, each of
    the three times it is asked: whether the person's phone rang is unknown, so the dial is
    not sent again; the attempt is spent (`failed`, `provider_error`) and the retry policy
    decides what comes next."""
    ringing = {**HUMANS_ONLY, "human": 0, "no_answer": 1, "ring_seconds": [30, 30]}
    await service.scenario(**ringing, lost_response_rate=1.0, drop_rate=1.0, lookup_error_rate=1.0)
    tenant = await service.tenant()
    campaign = await campaign_of(tenant, 1)

    async def ended() -> Any:
        calls = await tenant.ok("GET", "/calls", params={"campaign_id": campaign["id"]})
        return calls if calls and calls[0]["status"] not in LIVE_STATUSES else None

    (call,) = await wait_for(ended, timeout=40)
    assert call["status"] == "failed" and call["ended_reason"] == "provider_error"
    (person,) = await all_recipients(tenant, campaign["id"])
    assert person["attempts"] == 1
    await asyncio.sleep(2.5)  # past the next back-off: no second send
    seen = await service.observed()
    assert seen["created"] == 1 and seen["lookups"] == sender.LOOKUP_TRIES  # asked, and again


@pytest.mark.parametrize(
    ("trouble", "reason"),
    [("rate_limit_rate", "rate_limited"), ("server_error_rate", "provider_unavailable")],
)
async def test_a_dial_never_placed_on_any_try_keeps_its_attempt(
    service: Service, monkeypatch: pytest.MonkeyPatch, trouble: str, reason: str
) -> None:
    """429 on every try, or a 500 after which the provider lists no call: nothing was
    placed, so the dial is sent again after its back-off, and after the last try the attempt
    is given back (`canceled`, `rate_limited` or `provider_unavailable`) and the recipient
    dialed again later, not spent (before, the 500s: `failed` after the sixth try, the
    attempt spent)."""
    monkeypatch.setattr(sender, "MAX_SEND_TRIES", 2)
    await service.scenario(**HUMANS_ONLY, **{trouble: 1.0})
    tenant = await service.tenant()
    campaign = await campaign_of(tenant, 1)

    async def dialed_again() -> Any:
        calls = await tenant.ok("GET", "/calls", params={"campaign_id": campaign["id"]})
        return calls if len(calls) >= 2 else None

    calls = await wait_for(dialed_again, timeout=40)
    await tenant.ok("POST", f"/campaign/{campaign['id']}/pause")
    first = min(calls, key=lambda c: c["created_at"])
    assert first["status"] == "canceled" and first["ended_reason"] == reason
    (person,) = await all_recipients(tenant, campaign["id"])
    assert person["attempts"] <= 1  # the one on its way, if any: none was spent
    seen = await service.observed()
    assert seen["created"] == 0
    if trouble == "server_error_rate":  # each 500 looked for in the provider's list
        assert seen["server_errors"] >= 2 and seen["lookups"] >= 2


async def test_a_hang_up_asked_while_the_dial_backs_off_places_nothing(
    service: Service,
) -> None:
    """`PATCH /calls/{id}` hangup on a call not yet with the provider (here: backing off
    after a 429): its next send is not made, and the call ends `canceled`. (It used to be
    sent, placed, and hung up once the provider had it.)"""
    ringing_long = {**HUMANS_ONLY, "human": 0, "no_answer": 1, "ring_seconds": [30, 30]}
    await service.scenario(**ringing_long, rate_limit_rate=1.0)
    tenant = await service.tenant()
    campaign = await campaign_of(tenant, 1)
    await wait_for(lambda: _refused_at_least(service, 1))
    (queued,) = await tenant.ok("GET", "/calls", params={"campaign_id": campaign["id"]})
    assert queued["status"] == "queued"
    await tenant.ok("PATCH", f"/calls/{queued['id']}", json={"action": "hangup"})
    await service.scenario(**ringing_long)  # the next send is taken

    async def ended() -> Any:
        call = await tenant.ok("GET", f"/calls/{queued['id']}")
        return call if call["status"] not in LIVE_STATUSES else None

    call = await wait_for(ended, timeout=15)  # not the 30 s it would ring
    assert (call["status"], call["ended_reason"]) == ("canceled", "hangup_requested")
    assert call["provider_call_sid"] is None
    assert (await service.observed())["created"] == 0


async def _refused_at_least(service: Service, count: int) -> bool:
    return bool((await service.observed())["rate_limited"] >= count)


async def _dials_at_least(service: Service, count: int) -> bool:
    return bool((await service.observed())["created"] >= count)


async def _looked_up_at_least(service: Service, count: int) -> bool:
    return bool((await service.observed())["lookups"] >= count)


async def _placed_at_least(service: Service, count: int) -> bool:
    return bool((await service.observed())["created"] >= count)


async def _claimed_unsent(service: Service, campaign_id: str) -> str | None:
    """A call of the campaign claimed and waiting for its moment, if there is one."""
    query = select(Call.id).where(
        Call.campaign_id == campaign_id, Call.status == "queued", Call.dial_started_at.is_(None)
    )
    async with service.app.state.sessionmaker() as session:
        return (await session.scalars(query.limit(1))).first()


async def _no_live_calls(service: Service) -> bool:
    return (await service.observed())["live"] == 0


async def test_a_stopping_dialer_gives_back_what_it_has_not_sent(
    backend: str, tmp_path: Path
) -> None:
    """The server shutting down (a deploy, SIGTERM) while dials wait for their paced moment:
    its dialer gives them back before it exits, the attempts not spent, rather than leaving
    them claimed under a lease for the reaper; the next server dials each of them once."""
    key, data = Fernet.generate_key().decode(), tmp_path / "data"
    async with fresh_database(backend, tmp_path, POSTGRES_URL) as url:
        async with running_service(url, data, secret_key=key) as service:
            await service.scenario(**HUMANS_ONLY)
            tenant = await service.tenant()
            slow = await tenant.phone_number(calls_per_second=1)  # one dial a second
            campaign = await campaign_of(tenant, 12, max_concurrency=12, phone_number_id=slow["id"])
            await wait_for(lambda: _placed_at_least(service, 2))
            await wait_for(lambda: _claimed_unsent(service, campaign["id"]))
            placed_before = (await service.observed())["created"]
        engine = create_engine(url)
        try:
            async with create_sessionmaker(engine)() as session:
                query = select(Call).where(Call.campaign_id == campaign["id"])
                left = list((await session.scalars(query)).all())
                query = select(CampaignRecipient).where(
                    CampaignRecipient.campaign_id == campaign["id"]
                )
                people = list((await session.scalars(query)).all())
        finally:
            await engine.dispose()
        assert [c.id for c in left if c.status == "queued"] == []
        given_back = {c.to_number for c in left if c.ended_reason == "dialer_stopped"}
        assert given_back  # (claimed, waiting for their moment)
        dialed_before = {c.to_number for c in left if c.provider_call_sid}
        assert len(dialed_before) >= placed_before and not dialed_before & given_back
        for call in left:
            if call.to_number in given_back:
                assert call.status == "canceled" and call.provider_call_sid is None
        for person in people:  # nobody's attempt spent but by a dial
            if person.phone_number not in dialed_before:
                assert (person.status, person.attempts) == ("pending", 0)

        async with running_service(url, data, secret_key=key) as service:
            await service.scenario(**HUMANS_ONLY)
            again = replace(tenant, http=service.http)
            done = await finished(again, campaign["id"])
            dialed = (await service.observed())["dials_by_to"]
            after = await all_recipients(again, campaign["id"])
        assert done["counts"]["calls_active"] == 0
        for person in after:
            if person["phone_number"] in given_back:
                assert (person["status"], person["attempts"]) == ("completed", 1), person
                assert dialed[person["phone_number"]] == 1


async def test_a_call_hung_up_before_its_dial_is_never_placed(service: Service) -> None:
    """`PATCH /calls/{id}` with `action: hangup` for a campaign call claimed and waiting for
    its paced moment (or its pre-dial check's answer, or a send again after a 429): the
    gate refuses it, nobody is called, and its recipient ends `cancelled` rather than being
    dialed again. It used to be placed, the person's phone ringing, and hung up after."""
    await service.scenario(**HUMANS_ONLY, talk_seconds=[30, 30])
    tenant = await service.tenant()
    slow = await tenant.phone_number(calls_per_second=0.25)  # one dial every four seconds
    campaign = await campaign_of(tenant, 2, max_concurrency=2, phone_number_id=slow["id"])
    call_id = await wait_for(lambda: _claimed_unsent(service, campaign["id"]), every=0.02)
    await tenant.ok("PATCH", f"/calls/{call_id}", json={"action": "hangup"})

    async def ended() -> Any:
        call = await tenant.ok("GET", f"/calls/{call_id}")
        return call if call["status"] == "canceled" else None

    call = await wait_for(ended, timeout=20)
    assert call["ended_reason"] == "hangup_requested"
    assert (await service.observed())["dials_by_to"].get(call["to_number"], 0) == 0
    (person,) = [
        p
        for p in await all_recipients(tenant, campaign["id"])
        if p["phone_number"] == call["to_number"]
    ]
    assert (person["status"], person["attempts"]) == ("cancelled", 0)  # (nobody was called)


async def test_a_surprise_in_one_claim_round_does_not_end_the_dialing(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A claim round that fails with something other than a database or network error (the
    connection pool's timeout under load, `sqlalchemy.exc.TimeoutError`, is neither) is
    logged and tried again; it used to end the dialer's loop for good, the API serving on
    and every campaign `running` with nobody dialed."""
    failures = pool_timeout_once(monkeypatch, claiming, "lock_running_campaign")
    await service.scenario(**HUMANS_ONLY)
    tenant = await service.tenant()
    campaign = await campaign_of(tenant, 3, max_concurrency=3)
    done = await finished(tenant, campaign["id"])
    assert failures == [] and done["counts"]["completed"] == 3


async def test_claims_paced_past_the_lease_are_not_taken_back_unsent(
    backend: str, tmp_path: Path
) -> None:
    """Slots free and one dial a second: the sweep claims every second, and pacing reserved
    two more seconds each time after the number's last reservation, so the dials ran ever
    further ahead of their claims; past the lease the reaper gave them back unsent
    (`worker_lost`) and reserved on, the campaign dialing less and less. (A lease of two
    seconds here; at the default minute, the same with more slots or a slower number.)"""
    async with (
        fresh_database(backend, tmp_path, POSTGRES_URL) as url,
        running_service(url, tmp_path / "data", dialer_lease_seconds=2) as service,
    ):
        await service.scenario(**HUMANS_ONLY, ring_seconds=[0.05, 0.1], talk_seconds=[60, 60])
        tenant = await service.tenant()
        number = await tenant.phone_number(calls_per_second=1)
        campaign = await campaign_of(tenant, 40, max_concurrency=40, phone_number_id=number["id"])
        await wait_for(lambda: _placed_at_least(service, 8), timeout=30)
        calls = await tenant.ok("GET", "/calls", params={"campaign_id": campaign["id"]})
        assert [c["ended_reason"] for c in calls if c["ended_reason"] == "worker_lost"] == []


async def test_refused_credentials_pause_the_campaign_with_a_reason(service: Service) -> None:
    await service.scenario(reject_credentials=["tok-secret-1"])
    tenant = await service.tenant()
    campaign = await campaign_of(tenant, 5, max_concurrency=1)

    # A dial claimed before the third refusal paused the campaign may still be on its way:
    # it is refused (or stopped at the gate) and given back like the others.
    current = await campaign_when(
        tenant,
        campaign["id"],
        lambda c: c["status"] == "paused" and c["counts"]["pending"] == 5,
    )
    assert "refused" in current["status_reason"] and "20003" in current["status_reason"]
    people = await all_recipients(tenant, campaign["id"])
    assert all(p["attempts"] == 0 for p in people)


async def test_a_call_vobiz_refuses_for_the_account_pauses_the_campaign(
    service: Service,
) -> None:
    """Vobiz takes the dials of an account out of credits and hangs each up at once (cause
    1010): the campaign pauses with the problem as its reason, the refused attempts do not
    count, and once resumed (the account fixed) everyone is called."""
    await service.scenario(**HUMANS_ONLY, **FAST, account_failure_cause="1010")
    tenant = await service.tenant()
    campaign = await vobiz_campaign(tenant, 5, max_concurrency=2)
    paused = await campaign_when(
        tenant,
        campaign["id"],
        lambda c: c["status"] == "paused" and c["counts"]["calls_active"] == 0,
    )
    assert "out of credits" in paused["status_reason"] and "1010" in paused["status_reason"]
    assert paused["counts"]["pending"] == 5
    calls = await tenant.ok("GET", "/calls", params={"campaign_id": campaign["id"]})
    # (a dial claimed as the pause was being written may have met it at the gate instead)
    refused = [c for c in calls if c["status"] == "failed"]
    assert refused and {c["ended_reason"] for c in refused} == {"provider_refused"}
    assert all(p["attempts"] == 0 for p in await all_recipients(tenant, campaign["id"]))

    await service.scenario(**HUMANS_ONLY, **FAST)
    await tenant.ok("POST", f"/campaign/{campaign['id']}/resume")
    done = await campaign_when(tenant, campaign["id"], lambda c: c["status"] == "completed", 90)
    assert done["counts"]["completed"] == 5
    assert all(p["attempts"] == 1 for p in await all_recipients(tenant, campaign["id"]))


async def test_a_late_refusal_of_a_call_dialed_before_a_resume_pauses_nothing(
    service: Service,
) -> None:
    """Vobiz's hang-up for the account's sake (1010) of a call dialed before the user
    resumed, reported only after the resume (a slow carrier, or a repeat): the user resumed
    after that call, the account mended, and the report says nothing of the dials since, so
    the campaign goes on; it paused again before, with nothing left to mend."""
    await service.scenario(
        **HUMANS_ONLY, **FAST, account_failure_cause="1010", callback_delay_seconds=2.0
    )
    tenant = await service.tenant()
    campaign = await vobiz_campaign(tenant, 2, max_concurrency=2)
    await wait_for(lambda: _dials_at_least(service, 2))
    await service.scenario(**HUMANS_ONLY, **FAST)  # the account mended
    await tenant.ok("POST", f"/campaign/{campaign['id']}/pause")
    await tenant.ok("POST", f"/campaign/{campaign['id']}/resume")
    # (the two hang-ups arrive now; their attempts are given back and dialed again)
    done = await campaign_when(
        tenant, campaign["id"], lambda c: c["status"] in ("paused", "completed"), 60
    )
    assert done["status"] == "completed", done["status_reason"]
    assert done["counts"]["completed"] == 2


async def test_a_refused_call_that_ends_after_a_stop_ends_its_recipient_as_the_stop_did(
    service: Service,
) -> None:
    """A call Vobiz refuses for the account, whose hang-up comes after the campaign was
    stopped: its recipient, never called, ends `cancelled` as the stop made every waiting
    one, not `failed`."""
    await service.scenario(account_failure_cause="1010", callback_delay_seconds=1.5)
    tenant = await service.tenant()
    campaign = await vobiz_campaign(tenant, 2, max_concurrency=2)
    await wait_for(lambda: _dials_at_least(service, 2))
    await tenant.ok("POST", f"/campaign/{campaign['id']}/stop")
    done = await campaign_when(
        tenant, campaign["id"], lambda c: c["counts"]["calls_active"] == 0, 20
    )
    assert done["status"] == "completed" and done["counts"]["cancelled"] == 2
    for person in await all_recipients(tenant, campaign["id"]):
        assert person["status"] == "cancelled" and person["status_reason"] == "campaign stopped"
    calls = await tenant.ok("GET", "/calls", params={"campaign_id": campaign["id"]})
    assert {c["ended_reason"] for c in calls} == {"provider_refused"}


async def test_credentials_that_cannot_be_read_pause_the_campaign_with_a_reason(
    service: Service,
) -> None:
    """The caller number's credentials were sealed with another secret key (the key changed
    without re-entering them): each dial is refused as the provider refuses bad credentials,
    its attempt given back, and the breaker pauses the campaign saying what to do. (Before,
    the error escaped each dial after its gate, and the reaper later ended it `lost`.)"""
    tenant = await service.tenant()
    number = await tenant.phone_number(calls_per_second=100)
    async with write_transaction(service.app.state.sessionmaker) as session:
        await session.execute(
            update(PhoneNumber)
            .where(PhoneNumber.id == number["id"])
            .values(credentials=Fernet(Fernet.generate_key()).encrypt(b"{}"))
        )
    campaign = await campaign_of(tenant, 5, max_concurrency=1, phone_number_id=number["id"])
    current = await campaign_when(
        tenant,
        campaign["id"],
        lambda c: c["status"] == "paused" and c["counts"]["pending"] == 5,
    )
    assert "cannot be read" in current["status_reason"]
    assert "enter them again" in current["status_reason"]
    people = await all_recipients(tenant, campaign["id"])
    assert all(p["attempts"] == 0 for p in people)
    assert (await service.observed())["created"] == 0


async def test_calls_whose_callbacks_are_lost_are_reconciled(service: Service) -> None:
    await service.scenario(drop_rate=0.7, seed=5)
    tenant = await service.tenant()
    campaign = await campaign_of(tenant, 12, max_concurrency=4)
    done = await finished(tenant, campaign["id"])
    assert sum(done["counts"][s] for s in RECIPIENT_FINAL) == 12
    assert done["counts"]["calls_active"] == 0
    calls = await tenant.ok("GET", "/calls", params={"campaign_id": campaign["id"]})
    assert any(c["ended_reason"] == "reconciled" for c in calls)
    assert max((await service.observed())["peak_by_from"].values()) <= 4


async def test_a_call_the_reaper_reconciles_keeps_what_the_provider_says_of_it(
    service: Service,
) -> None:
    """Every callback of an answered call lost: the reaper asks the provider, which says
    `completed` and how long the call lasted (well under a second here). The call keeps the
    provider's duration, and the attempt is `completed`: the duration was measured to the
    moment of the reap (the silence allowed a live call, ten minutes by default)."""
    await service.scenario(**HUMANS_ONLY, drop_rate=1.0, talk_seconds=[0.1, 0.2])
    tenant = await service.tenant()
    campaign = await campaign_of(tenant, 1)
    done = await finished(tenant, campaign["id"])
    (call,) = await tenant.ok("GET", "/calls", params={"campaign_id": campaign["id"]})
    assert call["ended_reason"] == "reconciled"
    assert call["duration_seconds"] is not None and call["duration_seconds"] <= 1
    assert done["counts"]["completed"] == 1


async def test_a_dial_placed_despite_an_error_answer_is_not_placed_twice(
    service: Service,
) -> None:
    """The carrier places every call and answers 500 (its response lost): the dialer waits
    for the call's callbacks before sending again, finds them, and rings no one twice."""
    await service.scenario(
        **HUMANS_ONLY, ring_seconds=[0.1, 0.2], talk_seconds=[0.2, 0.3], lost_response_rate=1
    )
    tenant = await service.tenant()
    for campaign in await campaigns_on_both(tenant, 3):
        done = await finished(tenant, campaign["id"])
        assert done["counts"]["completed"] == 3
        calls = await tenant.ok("GET", "/calls", params={"campaign_id": campaign["id"]})
        assert all(c["status"] == "completed" and c["provider_call_sid"] for c in calls)
    seen = await service.observed()
    assert seen["lost_responses"] == 6
    assert seen["created"] == 6
    assert set(seen["dials_by_to"].values()) == {1}


async def test_a_dial_placed_despite_an_error_on_its_last_try_is_not_failed(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the last try too, an ambiguous error waits for the call's callbacks: a call the
    provider placed goes on (it would otherwise end `failed` while the person's phone rings,
    its callbacks ignored)."""
    monkeypatch.setattr(sender, "MAX_SEND_TRIES", 1)  # every try is the last
    await service.scenario(
        **HUMANS_ONLY, ring_seconds=[0.1, 0.2], talk_seconds=[0.2, 0.3], lost_response_rate=1
    )
    tenant = await service.tenant()
    campaign = await campaign_of(tenant, 2, max_concurrency=2)
    done = await finished(tenant, campaign["id"])
    assert done["counts"]["completed"] == 2 and done["counts"]["failed"] == 0
    calls = await tenant.ok("GET", "/calls", params={"campaign_id": campaign["id"]})
    assert all(c["status"] == "completed" and c["provider_call_sid"] for c in calls)
    seen = await service.observed()
    assert seen["lost_responses"] == seen["created"] == 2
    assert set(seen["dials_by_to"].values()) == {1}


async def test_a_vobiz_campaign_dials_to_completion(service: Service) -> None:
    await service.scenario(human=1, machine=1, no_answer=1, busy=1, failed=1, seed=9)
    tenant = await service.tenant()
    number = await tenant.phone_number("+919876543210", provider="vobiz", calls_per_second=50)
    campaign = await campaign_of(
        tenant, 12, max_concurrency=3, channel="vobiz", phone_number_id=number["id"]
    )
    done = await finished(tenant, campaign["id"])
    assert sum(done["counts"][s] for s in RECIPIENT_FINAL) == 12
    calls = await tenant.ok("GET", "/calls", params={"campaign_id": campaign["id"]})
    assert {c["provider"] for c in calls} == {"vobiz"}
    people = {p["last_call_id"]: p["status"] for p in await all_recipients(tenant, campaign["id"])}
    for call in calls:
        if call["answered_by"] == "machine":
            assert people[call["id"]] == "voicemail"
    assert max((await service.observed())["peak_by_from"].values()) <= 3


async def test_callbacks_find_a_call_whose_provider_id_was_never_stored(service: Service) -> None:
    await service.scenario(
        **HUMANS_ONLY,
        ring_seconds=[1.0, 1.0],
        talk_seconds=[0.2, 0.2],
    )
    tenant = await service.tenant()
    campaign = await campaign_of(tenant, 1)

    async def placed() -> Any:
        calls = await tenant.ok("GET", "/calls", params={"campaign_id": campaign["id"]})
        return calls[0] if calls and calls[0]["provider_call_sid"] else None

    call = await wait_for(placed)
    async with service.app.state.sessionmaker() as session, session.begin():
        await session.execute(
            update(Call).where(Call.id == call["id"]).values(provider_call_sid=None)
        )
    await finished(tenant, campaign["id"])
    ended = await tenant.ok("GET", f"/calls/{call['id']}")
    assert ended["status"] == "completed"
    assert ended["provider_call_sid"] == call["provider_call_sid"]


async def test_a_paced_round_claims_again_once_its_dials_are_out(
    backend: str, tmp_path: Path
) -> None:
    """Pacing lets a round claim only what can be dialed in the next two seconds; once those
    dials are out the campaign is claimed again at once, not at the next sweep (a minute
    here), though no call has ended to wake the dialer."""
    async with (
        fresh_database(backend, tmp_path, POSTGRES_URL) as url,
        running_service(url, tmp_path / "data", dialer_sweep_seconds=60) as service,
    ):
        await service.scenario(**HUMANS_ONLY, ring_seconds=[0.05, 0.1], talk_seconds=[30, 30])
        tenant = await service.tenant()
        paced = await tenant.phone_number(calls_per_second=5)  # ten dials a round
        await campaign_of(tenant, 25, max_concurrency=25, phone_number_id=paced["id"])
        # 25 dials at 5 a second: about five seconds, in three rounds.
        await wait_for(lambda: _placed_at_least(service, 25), timeout=20)


async def test_the_last_end_completes_the_campaign_without_the_reaper(
    backend: str, tmp_path: Path
) -> None:
    """A campaign is complete as soon as its last call's end is written: the callback that
    ends it finds nothing left (on PostgreSQL only an end whose statement saw no recipient
    waiting to be dialed asks, `store.Ended`). The reaper, which would complete it too, runs
    once an hour here. Its end and its counters agree with its recipients."""
    async with (
        fresh_database(backend, tmp_path, POSTGRES_URL) as url,
        running_service(url, tmp_path / "data", dialer_reap_seconds=3600) as service,
    ):
        await service.scenario(**HUMANS_ONLY, ring_seconds=[0, 0.05], talk_seconds=[0, 0.1])
        tenant = await service.tenant()
        campaign = await campaign_of(tenant, 40, max_concurrency=8)
        done = await campaign_when(tenant, campaign["id"], lambda c: c["status"] == "completed")
        recipients = await all_recipients(tenant, campaign["id"])
    assert [r["status"] for r in recipients] == ["completed"] * 40
    assert done["counts"]["completed"] == 40
    assert sum(done["counts"][status] for status in ("pending", "dialing", "in_progress")) == 0
