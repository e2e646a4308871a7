"""`find` on the payloads the providers document, shapes the simulator does not serve."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx

from outdial.telephony.base import CallState
from outdial.telephony.twilio import TwilioProvider
from outdial.telephony.vobiz import VobizProvider

SINCE = datetime(2026, 6, 11, 16, 0, tzinfo=UTC)
# Vobiz's "Retrieve a live call" in its older, Plivo-like shape (docs.vobiz.ai), its numbers
# written with a `+`; the call records list (`/cdr`) as documented.
LIVE = {
    "api_id": "c8b427f6-58ce-11e1-86da-adf28403fe48",
    "calls": [
        {
            "call_uuid": "97ceeb52-58b6-11e1-86da-77300b68f8bb",
            "call_state": "ACTIVE",
            "from_number": "+14156667777",
            "to_number": "+14156667778",
            "initiation_time": "2026-06-11 16:03:38",
        }
    ],
}
RECORDS = {
    "count": 2,
    "data": [
        {
            "uuid": "aabbccdd-1234-5678-90ab-cdef12345678",
            "caller_id_number": "+14156667777",
            "destination_number": "+14156667778",
            "start_time": "2026-06-11T16:10:00Z",
        },
        {
            "uuid": "11223344-5566-7788-99aa-bbccddeeff00",
            "caller_id_number": "+14156667777",
            "destination_number": "+14156667778",
            "start_time": "2026-06-11T15:10:00Z",  # before the dial: another call
        },
    ],
}


def _vobiz(request: httpx.Request) -> httpx.Response:
    path, status = request.url.path, request.url.params.get("status")
    if path.endswith("/cdr"):
        return httpx.Response(200, json=RECORDS)
    if path.endswith("/Call/") and status == "live":  # (the queued list is empty)
        return httpx.Response(200, json={"api_id": "x", "calls": [LIVE["calls"][0]["call_uuid"]]})
    if path.endswith("/Call/"):
        return httpx.Response(200, json={"api_id": "x", "calls": []})
    return httpx.Response(200, json=LIVE)


async def test_vobiz_find_reads_the_older_live_call_shape_and_the_records() -> None:
    async with httpx.AsyncClient(transport=httpx.MockTransport(_vobiz)) as client:
        provider = VobizProvider(client, "MA_TEST", "t", base_url="http://vobiz/api/v1")
        found = await provider.find("+14156667778", "+14156667777", SINCE)
    assert found == ["97ceeb52-58b6-11e1-86da-77300b68f8bb", "aabbccdd-1234-5678-90ab-cdef12345678"]


async def test_vobiz_fetch_finds_a_call_that_goes_live_between_its_questions() -> None:
    """A call Vobiz held queued (its pacing, its concurrency) goes out between the two
    questions of a fetch. Asked live first, it was in neither list and had no record yet:
    unknown, and the reaper ended it while the person's phone rang. Asked queued first (a
    call moves from that list to the live one), the second question finds it."""
    uuid = "97ceeb52-58b6-11e1-86da-77300b68f8bb"
    where = ["queued"]
    asked: list[str] = []

    def vobiz_api(request: httpx.Request) -> httpx.Response:
        status = request.url.params.get("status")
        asked.append(status or "record")
        if status is None:
            return httpx.Response(404, json={"error": "not found"})  # live: no record yet
        found = status == where[0]
        where[0] = "live"  # whichever list was asked first, the call goes out after it
        return httpx.Response(200 if found else 404, json={"call_uuid": uuid})

    async with httpx.AsyncClient(transport=httpx.MockTransport(vobiz_api)) as client:
        provider = VobizProvider(client, "MA_TEST", "t", base_url="http://vobiz/api/v1")
        seen = await provider.fetch(uuid)
    assert seen is not None and seen.state in (CallState.QUEUED, CallState.IN_PROGRESS), asked


async def test_twilio_find_reads_rfc_2822_creation_times() -> None:
    calls = [
        {"sid": "CA" + "1" * 32, "date_created": "Thu, 11 Jun 2026 16:00:05 +0000"},
        {"sid": "CA" + "2" * 32, "date_created": "Thu, 11 Jun 2026 15:59:59 +0000"},
    ]

    def twilio(request: httpx.Request) -> httpx.Response:
        assert request.url.params["To"] == "+14156667778"
        assert request.url.params["From"] == "+14156667777"
        return httpx.Response(200, json={"calls": calls, "page": 0})

    async with httpx.AsyncClient(transport=httpx.MockTransport(twilio)) as client:
        provider = TwilioProvider(client, "AC" + "ab" * 16, "t", base_url="http://twilio")
        assert await provider.find("+14156667778", "+14156667777", SINCE) == ["CA" + "1" * 32]
