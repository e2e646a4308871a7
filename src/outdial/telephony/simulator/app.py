"""The simulator's HTTP face: Twilio's and Vobiz's REST dialects plus a small control API."""

from __future__ import annotations

import asyncio
import base64
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import aiohttp
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse

from outdial.telephony.simulator.carrier import Carrier, SimCall
from outdial.telephony.simulator.scenario import Scenario

twilio_router = APIRouter(prefix="/2010-04-01/Accounts/{account_sid}/Calls", tags=["twilio"])
vobiz_router = APIRouter(prefix="/api/v1/Account/{auth_id}/Call", tags=["vobiz"])
vobiz_records_router = APIRouter(prefix="/api/v1/Account/{auth_id}", tags=["vobiz"])
control_router = APIRouter(prefix="/_sim", tags=["control"])


def _carrier(request: Request) -> Carrier:
    carrier: Carrier = request.app.state.carrier
    return carrier


def _twilio_error(status: int, code: int, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message, "status": status}, status_code=status)


def _page_size(value: str, largest: int) -> int | None:
    """A page size from the query (1 to `largest`), or None for anything else."""
    try:
        size = int(value)
    except ValueError:
        return None
    return size if 1 <= size <= largest else None


def _basic_auth(request: Request, account_sid: str) -> str | None:
    """The auth token from HTTP Basic auth, when the user is the account in the path."""
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, token = base64.b64decode(encoded).decode().partition(":")
    except ValueError:
        return None
    return token if user == account_sid and token else None


def _refused(carrier: Carrier, token: str | None) -> bool:
    return token is None or token in carrier.scenario.reject_credentials


def _response_lost(carrier: Carrier) -> bool:
    """The call is placed, but the dialer hears a 500 (`lost_response_rate`)."""
    if carrier.dice.chance(carrier.scenario.lost_response_rate):
        carrier.seen.lost_responses += 1
        return True
    return False


def _server_error(carrier: Carrier) -> bool:
    """The dialer hears a 500 and nothing is placed (`server_error_rate`)."""
    if carrier.dice.chance(carrier.scenario.server_error_rate):
        carrier.seen.server_errors += 1
        return True
    return False


async def _lookup_fails(carrier: Carrier) -> bool:
    """A listing of calls or a call's fetch, answered after `lookup_delay_seconds`, and 500
    at `lookup_error_rate`."""
    seen = carrier.seen
    seen.lookups += 1
    seen.looking_up += 1
    seen.lookups_at_once = max(seen.lookups_at_once, seen.looking_up)
    try:
        await asyncio.sleep(carrier.scenario.lookup_delay_seconds)
    finally:
        seen.looking_up -= 1
    return carrier.dice.chance(carrier.scenario.lookup_error_rate)


def _listed(carrier: Carrier, dialect: str, account: str) -> list[SimCall]:
    """The account's calls the listings show, newest first: those older than the scenario's
    `listing_lag_seconds`."""
    shown_before = datetime.now(UTC) - timedelta(seconds=carrier.scenario.listing_lag_seconds)
    return [
        call
        for call in reversed(carrier.calls.values())
        if call.dialect == dialect and call.account == account and call.created_at <= shown_before
    ]


def _rfc2822(moment: datetime) -> str:
    return format_datetime(moment.astimezone(UTC), usegmt=False)


@twilio_router.post(".json")
async def twilio_create(account_sid: str, request: Request) -> Response:
    carrier = _carrier(request)
    token = _basic_auth(request, account_sid)
    if _refused(carrier, token):
        carrier.seen.rejected += 1
        return _twilio_error(401, 20003, "Authenticate")
    if carrier.dice.chance(carrier.scenario.rate_limit_rate):
        carrier.seen.rate_limited += 1
        return _twilio_error(429, 20429, "Too Many Requests")
    if _server_error(carrier):
        return _twilio_error(500, 20500, "Internal Server Error")
    form = await request.form()
    to, from_ = str(form.get("To", "")), str(form.get("From", ""))
    if not to.startswith("+") or not to[1:].isdigit() or to in carrier.scenario.invalid_numbers:
        return _twilio_error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
    urls = {"answer": str(form.get("Url", "")), "status": str(form.get("StatusCallback", ""))}
    assert token is not None
    call = carrier.open_call("twilio", account_sid, token, to, from_, urls)
    if _response_lost(carrier):
        return _twilio_error(500, 20500, "Internal Server Error")
    body = {
        "sid": call.sid,
        "status": "queued",
        "to": to,
        "from": from_,
        "account_sid": account_sid,
    }
    return JSONResponse(body, status_code=201)


@twilio_router.get(".json")
async def twilio_list(account_sid: str, request: Request) -> Response:
    """The account's calls, newest first, filtered by `To` and `From` as Twilio does."""
    carrier = _carrier(request)
    if _refused(carrier, _basic_auth(request, account_sid)):
        return _twilio_error(401, 20003, "Authenticate")
    if await _lookup_fails(carrier):
        return _twilio_error(500, 20500, "Internal Server Error")
    query = request.query_params
    size = _page_size(query.get("PageSize", "50"), 1000)
    if size is None:  # Twilio's limit and code for a page too large
        return _twilio_error(400, 20007, "PageSize must be a whole number from 1 to 1000")
    calls = [
        call
        for call in _listed(carrier, "twilio", account_sid)
        if query.get("To", call.to_number) == call.to_number
        and query.get("From", call.from_number) == call.from_number
    ][:size]
    listed = [
        {
            "sid": call.sid,
            "to": call.to_number,
            "from": call.from_number,
            "status": call.state,
            "date_created": _rfc2822(call.created_at),
        }
        for call in calls
    ]
    return JSONResponse({"calls": listed, "page": 0, "page_size": size})


def _twilio_call(request: Request, account_sid: str, sid: str) -> SimCall | JSONResponse:
    """The account's call, or the error Twilio would answer (401 or 404)."""
    carrier = _carrier(request)
    if _refused(carrier, _basic_auth(request, account_sid)):
        return _twilio_error(401, 20003, "Authenticate")
    call = carrier.calls.get(sid)
    if call is None or call.account != account_sid:
        return _twilio_error(404, 20404, "The requested resource was not found")
    return call


@twilio_router.get("/{sid}.json")
async def twilio_fetch(account_sid: str, sid: str, request: Request) -> Response:
    call = _twilio_call(request, account_sid, sid)
    if isinstance(call, JSONResponse):
        return call
    if await _lookup_fails(_carrier(request)):
        return _twilio_error(500, 20500, "Internal Server Error")
    return JSONResponse({"sid": sid, "status": call.state, "duration": str(call.duration)})


@twilio_router.post("/{sid}.json")
async def twilio_update(account_sid: str, sid: str, request: Request) -> Response:
    call = _twilio_call(request, account_sid, sid)
    if isinstance(call, JSONResponse):
        return call
    form = await request.form()
    if form.get("Status") in ("completed", "canceled") and not _carrier(request).hang_up(sid):
        return _twilio_error(400, 21220, "Call is not in-progress. Cannot redirect.")
    if form.get("Twiml") and not _carrier(request).redirect(sid, str(form.get("Twiml"))):
        return _twilio_error(400, 21220, "Call is not in-progress. Cannot redirect.")
    return JSONResponse({"sid": sid, "status": call.state})


def _vobiz_token(request: Request, auth_id: str) -> str | None:
    if request.headers.get("x-auth-id") != auth_id:
        return None
    return request.headers.get("x-auth-token") or None


@vobiz_router.post("/")
async def vobiz_create(auth_id: str, request: Request) -> Response:
    carrier = _carrier(request)
    token = _vobiz_token(request, auth_id)
    if _refused(carrier, token):
        carrier.seen.rejected += 1
        return JSONResponse({"error": "authentication failed"}, status_code=401)
    if carrier.dice.chance(carrier.scenario.rate_limit_rate):
        carrier.seen.rate_limited += 1
        return JSONResponse({"error": "too many requests"}, status_code=429)
    if _server_error(carrier):
        return JSONResponse({"error": "internal server error"}, status_code=500)
    body: dict[str, Any] = await request.json()
    urls = {
        name: str(body.get(f"{name}_url", ""))
        for name in ("answer", "ring", "hangup", "machine_detection")
    }
    urls["machine"] = urls.pop("machine_detection")
    assert token is not None
    call = carrier.open_call(
        "vobiz",
        auth_id,
        token,
        str(body.get("to", "")),
        "+" + str(body.get("from", "")).lstrip("+"),
        urls,
    )
    if _response_lost(carrier):
        return JSONResponse({"error": "internal server error"}, status_code=500)
    return JSONResponse(
        {"api_id": secrets.token_hex(8), "message": "Call fired", "request_uuid": call.sid},
        status_code=201,
    )


@vobiz_router.delete("/{uuid}/")
async def vobiz_hangup(auth_id: str, uuid: str, request: Request) -> Response:
    carrier = _carrier(request)
    if _refused(carrier, _vobiz_token(request, auth_id)):
        return JSONResponse({"error": "authentication failed"}, status_code=401)
    return Response(status_code=204 if carrier.hang_up(uuid) else 404)


@vobiz_router.post("/{uuid}/")
async def vobiz_transfer(auth_id: str, uuid: str, request: Request) -> Response:
    """Transfer a live call: its A-leg fetches new XML from `aleg_url`."""
    carrier = _carrier(request)
    if _refused(carrier, _vobiz_token(request, auth_id)):
        return JSONResponse({"error": "authentication failed"}, status_code=401)
    body: dict[str, Any] = await request.json()
    url = str(body.get("aleg_url") or "")
    if body.get("legs", "aleg") != "aleg" or not url.startswith(("http://", "https://")):
        return JSONResponse({"error": "aleg_url is required to transfer aleg"}, status_code=400)
    call = carrier.calls.get(uuid)
    if call is None or call.account != auth_id or not carrier.transfer(uuid, url):
        return JSONResponse({"error": "call not found or not in progress"}, status_code=404)
    return JSONResponse(
        {"api_id": secrets.token_hex(8), "message": "call transferred", "call_uuid": uuid},
        status_code=202,
    )


def _vobiz_in(call: SimCall, status: str | None) -> bool:
    """Whether `?status=live|queued` finds the call: queued until it rings, then live."""
    if status == "queued":
        return call.state == "queued"
    return status != "live" or (call.live and call.state != "queued")


@vobiz_router.get("/")
async def vobiz_list(auth_id: str, request: Request) -> Response:
    """`?status=live|queued`: the ids of the account's calls in that state, nothing more."""
    carrier = _carrier(request)
    if _refused(carrier, _vobiz_token(request, auth_id)):
        return JSONResponse({"error": "authentication failed"}, status_code=401)
    status = request.query_params.get("status")
    if status not in ("live", "queued"):
        return JSONResponse({"error": "status must be live or queued"}, status_code=400)
    if await _lookup_fails(carrier):
        return JSONResponse({"error": "internal server error"}, status_code=500)
    calls = [call.sid for call in _listed(carrier, "vobiz", auth_id) if _vobiz_in(call, status)]
    return JSONResponse({"api_id": secrets.token_hex(8), "calls": calls})


@vobiz_router.get("/{uuid}/")
async def vobiz_fetch(auth_id: str, uuid: str, request: Request) -> Response:
    carrier = _carrier(request)
    if _refused(carrier, _vobiz_token(request, auth_id)):
        return JSONResponse({"error": "authentication failed"}, status_code=401)
    call = carrier.calls.get(uuid)
    if call is None or not _vobiz_in(call, request.query_params.get("status")):
        return JSONResponse({"error": "not found"}, status_code=404)
    if await _lookup_fails(carrier):
        return JSONResponse({"error": "internal server error"}, status_code=500)
    return JSONResponse(
        {
            "call_uuid": uuid,
            "request_uuid": uuid,
            "call_status": call.state,
            "bill_duration": call.duration,
            "from": call.from_number.lstrip("+"),
            "to": call.to_number.lstrip("+"),
        }
    )


@vobiz_records_router.get("/cdr")
async def vobiz_records(auth_id: str, request: Request) -> Response:
    """Call records of ended calls, filtered by `from_number`, `to_number` and the days."""
    carrier = _carrier(request)
    if _refused(carrier, _vobiz_token(request, auth_id)):
        return JSONResponse({"error": "authentication failed"}, status_code=401)
    if await _lookup_fails(carrier):
        return JSONResponse({"error": "internal server error"}, status_code=500)
    query = request.query_params
    size = _page_size(query.get("per_page", "20"), 1000)
    if size is None:
        return JSONResponse({"error": "per_page must be a whole number from 1 to 1000"}, 400)
    first, last = query.get("start_date"), query.get("end_date")
    records = [
        {
            "uuid": call.sid,
            "caller_id_number": call.from_number,
            "destination_number": call.to_number,
            "start_time": call.created_at.isoformat().replace("+00:00", "Z"),
            "hangup_cause_name": call.state,
        }
        for call in _listed(carrier, "vobiz", auth_id)
        if not call.live
        and query.get("from_number", call.from_number) in call.from_number
        and query.get("to_number", call.to_number) in call.to_number
        and (first is None or first <= call.created_at.date().isoformat())
        and (last is None or call.created_at.date().isoformat() <= last)
    ][:size]
    return JSONResponse({"count": len(records), "data": records})


@control_router.get("/stats")
async def stats(request: Request) -> dict[str, Any]:
    return _carrier(request).seen.as_dict()


@control_router.get("/calls/{sid}")
async def call_details(sid: str, request: Request) -> Response:
    """One call as the carrier saw it, with what the scripted caller said and heard."""
    call = _carrier(request).calls.get(sid)
    if call is None:
        return JSONResponse({"detail": "Not Found"}, status_code=404)
    conversation = call.conversation.as_dict() if call.conversation else None
    return JSONResponse(
        {
            "sid": sid,
            "state": call.state,
            "fate": call.fate.value,
            "to": call.to_number,
            "duration": call.duration,
            "conversation": conversation,
            "voicemail": call.voicemail,
            "transferred_to": call.transferred_to,
            "briefing": call.briefing,
        }
    )


@control_router.put("/scenario")
async def set_scenario(scenario: Scenario, request: Request) -> dict[str, Any]:
    _carrier(request).set_scenario(scenario)
    return scenario.model_dump()


def create_simulator(scenario: Scenario | None = None) -> FastAPI:
    """A standalone simulator app (`outdial simulator`), or one to mount inside outdial."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        connector = aiohttp.TCPConnector(limit=32)
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as client:
            app.state.carrier = Carrier(scenario or Scenario(), client)
            yield
            await app.state.carrier.close()

    app = FastAPI(title="outdial carrier simulator", lifespan=lifespan)
    for router in (twilio_router, vobiz_router, vobiz_records_router, control_router):
        app.include_router(router)
    return app
