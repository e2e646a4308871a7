"""The real Twilio and Vobiz adapters against the carrier simulator's REST dialects."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from tests.dialing import wait_for

from outdial import http
from outdial.telephony.base import LIVE_STATES, CallState, DialError, DialErrorKind, DialRequest
from outdial.telephony.simulator.app import create_simulator
from outdial.telephony.simulator.scenario import Scenario
from outdial.telephony.twilio import TwilioProvider
from outdial.telephony.vobiz import VobizProvider

SID = "AC" + "ab" * 16
REQUEST = DialRequest(
    call_id="call_1",
    to_number="+14155550100",
    from_number="+14155550123",
    callback_base="http://127.0.0.1:9/telephony/x/call_1/s",
    machine_detection_timeout=30,
)


@pytest.fixture
async def simulator() -> AsyncIterator[httpx.AsyncClient]:
    app = create_simulator(Scenario(ring_seconds=(30, 30), reject_credentials=["bad-token"]))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sim") as client,
    ):
        yield client


def twilio_on(client: httpx.AsyncClient, token: str = "good") -> TwilioProvider:
    return TwilioProvider(client, SID, token, base_url="http://sim")


def vobiz_on(client: httpx.AsyncClient, token: str = "good") -> VobizProvider:
    return VobizProvider(client, "MA_TEST", token, base_url="http://sim/api/v1")


async def test_twilio_dial_fetch_and_hang_up(simulator: httpx.AsyncClient) -> None:
    provider = twilio_on(simulator)
    sid = await provider.dial(REQUEST)
    assert sid.startswith("CA") and len(sid) == 34
    seen = await provider.fetch(sid)
    assert seen is not None and seen.state in LIVE_STATES
    await provider.hangup(sid)
    await provider.hangup(sid)  # a second hang-up of an ended call is not an error
    assert await provider.fetch("CA" + "0" * 32) is None


async def test_twilio_errors_become_dial_error_kinds(simulator: httpx.AsyncClient) -> None:
    with pytest.raises(DialError) as refused:
        await twilio_on(simulator, "bad-token").dial(REQUEST)
    assert refused.value.kind is DialErrorKind.REJECTED and refused.value.code == "20003"
    with pytest.raises(DialError) as invalid:
        await twilio_on(simulator).dial(DialRequest(**{**REQUEST.__dict__, "to_number": "12"}))
    assert invalid.value.kind is DialErrorKind.INVALID_NUMBER and invalid.value.code == "21211"
    await simulator.put("/_sim/scenario", json={"rate_limit_rate": 1.0})
    with pytest.raises(DialError) as limited:
        await twilio_on(simulator).dial(REQUEST)
    assert limited.value.kind is DialErrorKind.RATE_LIMITED


async def test_a_request_the_provider_took_and_never_answered_is_unavailable() -> None:
    """Over the service's own client (httpx over aiohttp): a connection that drops after the
    request went out is an unknown outcome (the call is looked for), and one that cannot be
    opened sent nothing (`unreachable`), though aiohttp's errors reach httpx as one kind."""

    async def hang_up_after_reading(reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")  # the request: the provider may act on it
        w.close()

    server = await asyncio.start_server(hang_up_after_reading, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server, http.client(timeout=5, limits=httpx.Limits()) as client:
        taken = TwilioProvider(client, SID, "t", base_url=f"http://127.0.0.1:{port}")
        with pytest.raises(DialError) as unanswered:
            await taken.dial(REQUEST)
        assert unanswered.value.kind is DialErrorKind.UNAVAILABLE
        closed = VobizProvider(client, "MA_TEST", "t", base_url="http://127.0.0.1:9/api/v1")
        with pytest.raises(DialError) as down:
            await closed.dial(REQUEST)
        assert down.value.kind is DialErrorKind.UNREACHABLE


async def test_a_provider_that_cannot_be_reached_is_unreachable() -> None:
    """No connection: the request never left, so nothing was placed (sent again like a 429,
    with no need to look for the call)."""
    async with httpx.AsyncClient() as client:
        for provider in (
            TwilioProvider(client, SID, "t", base_url="http://127.0.0.1:9"),
            VobizProvider(client, "MA_TEST", "t", base_url="http://127.0.0.1:9/api/v1"),
        ):
            with pytest.raises(DialError) as down:
                await provider.dial(REQUEST)
            assert down.value.kind is DialErrorKind.UNREACHABLE


async def test_vobiz_dial_fetch_and_hang_up(simulator: httpx.AsyncClient) -> None:
    provider = vobiz_on(simulator)
    uuid = await provider.dial(REQUEST)
    seen = await provider.fetch(uuid)
    assert seen is not None and seen.state in LIVE_STATES  # queued, or ringing already

    async def ringing() -> bool:
        return bool((await simulator.get(f"/_sim/calls/{uuid}")).json()["state"] == "ringing")

    await wait_for(ringing, timeout=5)
    seen = await provider.fetch(uuid)
    assert seen is not None and seen.state is CallState.IN_PROGRESS  # live, as Vobiz reports it
    await provider.hangup(uuid)

    async def ended() -> bool:
        stats = (await simulator.get("/_sim/stats")).json()
        return bool(stats["created"] == 1 and stats["live"] == 0)

    await wait_for(ended, timeout=5)
    assert await provider.fetch(uuid) is not None  # the record of an ended call remains


async def test_a_vobiz_check_that_fails_never_reads_a_live_call_as_ended(
    simulator: httpx.AsyncClient,
) -> None:
    """Vobiz answers whether a call is live or queued only to `?status=`; without it, the
    call's record. A check answered 500 is no "not live": the fetch says it cannot tell,
    where it used to go on to the record, which reads a ringing call as ended (the reaper
    would then end a live call and free its slot). Half the questions fail here."""
    provider = vobiz_on(simulator)
    uuid = await provider.dial(REQUEST)

    async def ringing() -> bool:
        return bool((await simulator.get(f"/_sim/calls/{uuid}")).json()["state"] == "ringing")

    await wait_for(ringing, timeout=5)
    scenario = {"ring_seconds": [30, 30], "lookup_error_rate": 0.5, "seed": 7}
    await simulator.put("/_sim/scenario", json=scenario)
    seen = []
    for _ in range(20):
        try:
            found = await provider.fetch(uuid)
        except DialError as cannot_tell:
            assert cannot_tell.kind is DialErrorKind.UNAVAILABLE
            seen.append(None)
            continue
        assert found is not None
        seen.append(found.state)
    assert CallState.IN_PROGRESS in seen and None in seen
    assert set(seen) == {CallState.IN_PROGRESS, None}


async def test_vobiz_errors_become_dial_error_kinds(simulator: httpx.AsyncClient) -> None:
    with pytest.raises(DialError) as refused:
        await vobiz_on(simulator, "bad-token").dial(REQUEST)
    assert refused.value.kind is DialErrorKind.REJECTED
    await simulator.put("/_sim/scenario", json={"rate_limit_rate": 1.0})
    with pytest.raises(DialError) as limited:
        await vobiz_on(simulator).dial(REQUEST)
    assert limited.value.kind is DialErrorKind.RATE_LIMITED


async def test_vobiz_transfer_sends_a_live_call_to_new_xml(simulator: httpx.AsyncClient) -> None:
    await simulator.put(
        "/_sim/scenario",
        json={
            "human": 1,
            "machine": 0,
            "no_answer": 0,
            "busy": 0,
            "failed": 0,
            "ring_seconds": [0.05, 0.05],
            "talk_seconds": [60, 60],
            "reject_credentials": ["bad-token"],
        },
    )
    provider = vobiz_on(simulator)
    uuid = await provider.dial(REQUEST)

    async def answered() -> bool:
        details = (await simulator.get(f"/_sim/calls/{uuid}")).json()
        return bool(details["state"] == "in-progress")

    await wait_for(answered, timeout=5)
    # The call follows the new document (here one nobody serves: the call then ends).
    await provider.transfer(uuid, "http://127.0.0.1:9/telephony/x/call_1/s/voicemail")

    async def ended() -> bool:
        return bool((await simulator.get("/_sim/stats")).json()["live"] == 0)

    await wait_for(ended, timeout=5)
    await provider.transfer(uuid, "http://127.0.0.1:9/x")  # a call already gone: no error
    with pytest.raises(DialError) as refused:
        await vobiz_on(simulator, "bad-token").transfer(uuid, "http://127.0.0.1:9/x")
    assert refused.value.kind is DialErrorKind.REJECTED


@pytest.mark.parametrize("dialect", ["twilio", "vobiz"])
async def test_find_lists_the_calls_to_a_number_since_a_moment(
    simulator: httpx.AsyncClient, dialect: str
) -> None:
    """`find` answers "did the provider place this dial after all?": the calls from the
    caller number to the number since the moment given, live or ended, less those known."""
    provider = twilio_on(simulator) if dialect == "twilio" else vobiz_on(simulator)
    to, caller = REQUEST.to_number, REQUEST.from_number
    before = datetime.now(UTC) - timedelta(seconds=1)
    first = await provider.dial(REQUEST)
    await provider.dial(replace(REQUEST, to_number="+14155550199"))  # another person
    second = await provider.dial(REQUEST)
    assert set(await provider.find(to, caller, before)) == {first, second}
    assert await provider.find(to, caller, before, known={first, second}) == []
    assert await provider.find(to, "+14155550111", before) == []  # another caller number
    await provider.hangup(first)  # ended calls are found too (Vobiz: in the call records)

    async def ended() -> bool:  # the first call over, the two others still ringing
        return bool((await simulator.get("/_sim/stats")).json()["live"] == 2)

    await wait_for(ended, timeout=5)
    assert await provider.find(to, caller, before, known={second}) == [first]
    later = datetime.now(UTC) + timedelta(minutes=5)  # (Vobiz: `since` reads the records)
    assert await provider.find(to, caller, later, known={second}) == []
    await simulator.put("/_sim/scenario", json={"lookup_error_rate": 1.0})
    with pytest.raises(DialError) as unknown:
        await provider.find(to, caller, before)
    assert unknown.value.kind is DialErrorKind.UNAVAILABLE


async def test_the_simulators_lists_refuse_a_page_size_that_is_no_count(
    simulator: httpx.AsyncClient,
) -> None:
    twilio = f"/2010-04-01/Accounts/{SID}/Calls.json"
    vobiz = "/api/v1/Account/MA_TEST/cdr"
    headers = {"X-Auth-ID": "MA_TEST", "X-Auth-Token": "good"}
    for size in ("x", "0", "-1", "1.5", "1001", "²"):
        refused = await simulator.get(twilio, params={"PageSize": size}, auth=(SID, "good"))
        assert refused.status_code == 400 and refused.json()["code"] == 20007, size
        refused = await simulator.get(vobiz, params={"per_page": size}, headers=headers)
        assert refused.status_code == 400 and "per_page" in refused.json()["error"], size
    listed = await simulator.get(twilio, params={"PageSize": "1000"}, auth=(SID, "good"))
    assert listed.status_code == 200 and listed.json()["page_size"] == 1000
    assert (await simulator.get(vobiz, params={"per_page": "5"}, headers=headers)).is_success
