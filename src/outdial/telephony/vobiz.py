"""Vobiz: its Plivo-like REST API over httpx, and the callbacks it sends us.

Dial: `POST /api/v1/Account/{auth_id}/Call/` (JSON) with answer, ring, hangup and
machine-detection URLs. The hangup callback is the authoritative end of a call. A live call
is hung up with `DELETE …/Call/{uuid}/` and transferred to new XML with `POST …/Call/{uuid}/`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Collection, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from outdial.http import never_sent
from outdial.telephony.base import (
    PROVIDER_REFUSED,
    CallEvent,
    CallState,
    DialError,
    DialErrorKind,
    DialRequest,
    ProviderCall,
    Verdict,
    retry_after_seconds,
    unreadable,
)

API_BASE = "https://api.vobiz.ai/api/v1"
AMD_MS = (2000, 10_000)
_CAUSE_STATES = {
    "1000": CallState.CANCELED,
    "3000": CallState.NO_ANSWER,
    "6010": CallState.NO_ANSWER,
    "3010": CallState.BUSY,
    "3100": CallState.BUSY,
    "4000": CallState.COMPLETED,
    "4010": CallState.COMPLETED,
    "6000": CallState.COMPLETED,
    "9100": CallState.COMPLETED,
}
_STATUS_STATES = {
    "busy": CallState.BUSY,
    "no-answer": CallState.NO_ANSWER,
    "timeout": CallState.NO_ANSWER,
    "cancel": CallState.CANCELED,
    "failed": CallState.FAILED,
    "completed": CallState.COMPLETED,
}
# Destinations that cannot be reached whatever is tried again: invalid, out of service,
# unallocated, no such user, and barred (the country by geo permissions, the number, its
# prefix), as Twilio's refusals of such dials (`twilio.INVALID_NUMBER_CODES`).
INVALID_NUMBER_CAUSES = frozenset({"2000", "2010", "2030", "2040", "2050", "3050", "3120"})
# The FreeSWITCH names of `HangupCause`, for a hang-up that came without its code.
_NAMED_CAUSES = {
    "NORMAL_CLEARING": "4000",
    "ORIGINATOR_CANCEL": "1000",
    "NO_ANSWER": "3000",
    "USER_BUSY": "3010",
}
# Causes that say the account or the caller number cannot place calls at all: every dial
# would end so until someone fixes it (docs/dialer.md, "The breaker").
ACCOUNT_CAUSES = {
    "1010": "the Vobiz account is out of credits",
    "2070": "calls to Indian numbers need the media server in India (media anchoring)",
    "3030": "the caller id is not a number of this Vobiz account",
    "3140": "the caller id may not be used (do-not-originate list)",
}


def clamp_amd_ms(seconds: int) -> int:
    """Vobiz accepts machine_detection_time of 2000..10000 ms."""
    low, high = AMD_MS
    return min(max(seconds * 1000, low), high)


class VobizProvider:
    name = "vobiz"

    def __init__(
        self, client: httpx.AsyncClient, auth_id: str, auth_token: str, base_url: str = API_BASE
    ) -> None:
        self._client = client
        self._headers = {"X-Auth-ID": auth_id, "X-Auth-Token": auth_token}
        self._calls = f"{base_url.rstrip('/')}/Account/{auth_id}/Call/"
        self._records = f"{base_url.rstrip('/')}/Account/{auth_id}/cdr"

    async def dial(self, request: DialRequest) -> str:
        base = request.callback_base
        body = {
            "from": request.from_number.lstrip("+"),
            "to": request.to_number,
            "answer_url": f"{base}/answer",
            "answer_method": "POST",
            "ring_url": f"{base}/ring",
            "ring_method": "POST",
            "hangup_url": f"{base}/hangup",
            "hangup_method": "POST",
            "machine_detection": "true",
            "machine_detection_time": clamp_amd_ms(request.machine_detection_timeout),
            "machine_detection_url": f"{base}/machine",
            "machine_detection_method": "POST",
            "ring_timeout": request.ring_timeout,
            "time_limit": request.time_limit,
        }
        response = await self._send("POST", self._calls, json=body)
        if not response.is_success:
            raise _dial_error(response)
        payload = response.json()
        return str(payload.get("request_uuid") or payload["call_uuid"])

    async def hangup(self, provider_call_id: str) -> None:
        response = await self._send("DELETE", f"{self._calls}{provider_call_id}/")
        if response.status_code not in (200, 204, 404):
            raise _dial_error(response)

    async def transfer(self, provider_call_id: str, url: str) -> None:
        """Send the live call's A-leg to the XML document at `url` (fetched with a POST).

        It replaces what the call was doing (an open stream ends). A call already gone is
        not an error.
        """
        body = {"legs": "aleg", "aleg_url": url, "aleg_method": "POST"}
        response = await self._send("POST", f"{self._calls}{provider_call_id}/", json=body)
        if response.status_code != 404 and not response.is_success:
            raise _dial_error(response)

    async def fetch(self, provider_call_id: str) -> ProviderCall | None:
        # Queued first: a call moves from that list to the live one, so one that moves
        # between the two questions is found in the second (asked the other way, in
        # neither, and with no record yet, it read as unknown: the reaper ended it ringing).
        for status, state in (("queued", CallState.QUEUED), ("live", CallState.IN_PROGRESS)):
            current = await self._send(
                "GET", f"{self._calls}{provider_call_id}/", params={"status": status}
            )
            if current.is_success:
                return ProviderCall(state)
            if current.status_code != 404:  # not "not in that state": Vobiz cannot say
                raise _dial_error(current)
        record = await self._send("GET", f"{self._calls}{provider_call_id}/")
        if record.status_code == 404:
            return None
        if not record.is_success:
            raise _dial_error(record)
        try:
            body = record.json()
            state = _hangup_state(str(body.get("hangup_cause_code", "")), body.get("call_status"))
            duration = body.get("bill_duration") or body.get("duration")
            return ProviderCall(state, int(duration) if duration else None)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise unreadable("Vobiz") from exc

    async def find(
        self, to_number: str, from_number: str, since: datetime, known: Collection[str] = ()
    ) -> list[str]:
        """Queued and live calls are listed by id only (`GET …/Call/?status=queued|live`),
        queued first (a call moves from that list to the other): each one outdial does not
        know is fetched for its numbers; one between the two numbers counts whenever it
        began (its detail's time fields vary by shape). Ended calls come from the call
        records since `since`, filtered by the two numbers (a record is written a few
        seconds after the call ends, so a call that ended this instant may be in none of
        the three)."""
        try:
            found = await self._find_current(to_number, from_number, known)
            return found + [
                uuid
                for uuid in await self._find_recorded(to_number, from_number, since)
                if uuid not in known and uuid not in found
            ]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise unreadable("Vobiz") from exc

    async def _find_current(
        self, to_number: str, from_number: str, known: Collection[str]
    ) -> list[str]:
        found: list[str] = []
        for status in ("queued", "live"):
            listed = await self._json("GET", self._calls, params={"status": status})
            for uuid in listed["calls"]:
                if uuid in known or uuid in found:
                    continue
                call = await self._send("GET", f"{self._calls}{uuid}/", params={"status": status})
                if call.status_code == 404:
                    continue  # moved on since it was listed: to the next list, or its record
                if not call.is_success:
                    raise _dial_error(call)
                body = call.json()
                if "calls" in body:  # the older, Plivo-like shape: a list of one
                    body = (body["calls"] or [{}])[0]
                to = body.get("to") or body.get("to_number")
                caller = body.get("from") or body.get("from_number")
                if _same(to, to_number) and _same(caller, from_number):
                    found.append(str(uuid))
        return found

    async def _find_recorded(self, to_number: str, from_number: str, since: datetime) -> list[str]:
        days = {
            "start_date": (since - timedelta(days=1)).date().isoformat(),
            "end_date": (datetime.now(UTC) + timedelta(days=1)).date().isoformat(),
        }
        query = {"from_number": from_number, "to_number": to_number, "per_page": 100, **days}
        records = await self._json("GET", self._records, params=query)
        found = []
        for record in records["data"]:
            uuid, started = record.get("uuid"), record.get("start_time")
            if not uuid or not started:
                continue
            if not _same(record.get("destination_number"), to_number) or not _same(
                record.get("caller_id_number"), from_number
            ):
                continue  # (the filters match parts of numbers)
            moment = datetime.fromisoformat(str(started))
            if (moment if moment.tzinfo else moment.replace(tzinfo=UTC)) >= since:
                found.append(str(uuid))
        return found

    async def _json(self, method: str, url: str, **kwargs: object) -> dict[str, Any]:
        response = await self._send(method, url, **kwargs)
        if not response.is_success:
            raise _dial_error(response)
        body: dict[str, Any] = response.json()
        return body

    async def _send(self, method: str, url: str, **kwargs: object) -> httpx.Response:
        try:
            return await self._client.request(method, url, headers=self._headers, **kwargs)  # type: ignore[arg-type]
        except httpx.HTTPError as exc:
            if never_sent(exc):
                raise DialError(DialErrorKind.UNREACHABLE, f"Vobiz unreachable: {exc!r}") from exc
            # Sent, perhaps acted on, and no answer heard.
            raise DialError(DialErrorKind.UNAVAILABLE, f"Vobiz did not answer: {exc!r}") from exc


def _dial_error(response: httpx.Response) -> DialError:
    try:
        message = str(response.json().get("error") or response.json().get("message"))
    except (ValueError, AttributeError):
        message = response.text[:200]
    if response.status_code == 429:
        wait = retry_after_seconds(response.headers.get("Retry-After"))
        return DialError(DialErrorKind.RATE_LIMITED, message, "429", wait)
    if response.status_code >= 500:
        return DialError(DialErrorKind.UNAVAILABLE, message, str(response.status_code))
    return DialError(DialErrorKind.REJECTED, message, str(response.status_code))


def _same(number: object, ours: str) -> bool:
    """A number as Vobiz may write it (`919262171438` or `+919262171438`) is ours."""
    return str(number or "").lstrip("+") == ours.lstrip("+")


def signed_base(url: str) -> str:
    scheme, netloc, path, _query, _fragment = urlsplit(url)
    return urlunsplit((scheme, netloc, path, "", ""))


def sign_v3(url: str, nonce: str, auth_token: str) -> str:
    """V3: base64(HMAC-SHA256(auth_token, base_url + "." + nonce)); the body is not signed."""
    message = f"{signed_base(url)}.{nonce}".encode()
    return base64.b64encode(
        hmac.new(auth_token.encode(), message, hashlib.sha256).digest()
    ).decode()


def verify(url: str, nonce: str | None, signature: str | None, auth_token: str) -> bool:
    if not nonce or not signature:
        return False
    expected = sign_v3(url, nonce, auth_token)
    return any(hmac.compare_digest(expected, part.strip()) for part in signature.split(","))


def _hangup_state(cause: str, status: str | None) -> CallState:
    if cause in _CAUSE_STATES:
        return _CAUSE_STATES[cause]
    if status and status in _STATUS_STATES and status != "completed":
        return _STATUS_STATES[status]
    return CallState.FAILED if cause else _STATUS_STATES.get(status or "", CallState.FAILED)


def _request(form: Mapping[str, str]) -> str | None:
    """The dial's `request_uuid`, which outdial records as the call's id (the same as
    `CallUUID` for a call placed through the API; either one names the call)."""
    return form.get("RequestUUID") or None


def parse_ring(form: Mapping[str, str]) -> CallEvent:
    return CallEvent(
        form.get("CallUUID"), CallState.RINGING, dedupe_key="ring", request_id=_request(form)
    )


def parse_answer(form: Mapping[str, str]) -> CallEvent:
    return CallEvent(
        form.get("CallUUID"),
        CallState.IN_PROGRESS,
        dedupe_key="answer",
        request_id=_request(form),
    )


def parse_machine(form: Mapping[str, str]) -> CallEvent:
    machine = form.get("Machine", "").lower() == "true"
    return CallEvent(
        form.get("CallUUID"),
        None,
        verdict=Verdict.MACHINE if machine else Verdict.HUMAN,
        dedupe_key="machine",
        request_id=_request(form),
    )


def parse_voicemail(form: Mapping[str, str]) -> CallEvent:
    """The transferred A-leg asks for its voicemail document: nothing about the call changes."""
    return CallEvent(form.get("CallUUID"), None, dedupe_key="voicemail", request_id=_request(form))


def parse_hangup(form: Mapping[str, str]) -> CallEvent:
    cause = form.get("HangupCauseCode") or _NAMED_CAUSES.get(form.get("HangupCause", ""), "")
    duration = form.get("Duration") or form.get("BillDuration")
    account = ACCOUNT_CAUSES.get(cause)
    answered = bool(form.get("AnswerTime")) or (duration or "0") != "0"
    reason = form.get("HangupCause") or cause or None
    if cause in INVALID_NUMBER_CAUSES:
        reason = "invalid_number"  # (as Twilio's refusal of such a dial: never retried)
    elif account is not None and not answered:
        reason = PROVIDER_REFUSED  # (nobody was called: the attempt is given back)
    return CallEvent(
        provider_call_id=form.get("CallUUID"),
        state=_hangup_state(cause, form.get("CallStatus")),
        verdict=Verdict.MACHINE if cause == "9100" else None,
        duration_seconds=int(duration) if duration and duration.isdigit() else None,
        reason=reason,
        dedupe_key="hangup",
        request_id=_request(form),
        # (also for a call that was answered: the account cannot place the next one)
        account_problem=f"{account} (Vobiz cause {cause})" if account else None,
    )
