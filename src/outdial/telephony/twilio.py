"""Twilio: the Calls REST API over httpx, and the callbacks it sends us.

Dial: `POST /2010-04-01/Accounts/{sid}/Calls.json` (form), with synchronous answering-
machine detection (`MachineDetection=DetectMessageEnd`), so the verdict arrives as
`AnsweredBy` on the answer request. Status callbacks ask for every progress event.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from email.utils import parsedate_to_datetime

import httpx
from twilio.request_validator import RequestValidator

from outdial.http import never_sent
from outdial.telephony.base import (
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

API_BASE = "https://api.twilio.com"
STATUS_EVENTS = ("initiated", "ringing", "answered", "completed")
FIND_PAGE_SIZE = 50  # a number's newest calls: a dial is looked for seconds after it was sent
# Destinations Twilio will never connect: retrying cannot help.
INVALID_NUMBER_CODES = frozenset(
    {"21211", "21215", "21216", "21217", "13224", "13226", "13227", "32205"}
)
_STATES = {
    "queued": CallState.QUEUED,
    "initiated": CallState.INITIATED,
    "ringing": CallState.RINGING,
    "in-progress": CallState.IN_PROGRESS,
    "answered": CallState.IN_PROGRESS,
    "completed": CallState.COMPLETED,
    "busy": CallState.BUSY,
    "no-answer": CallState.NO_ANSWER,
    "failed": CallState.FAILED,
    "canceled": CallState.CANCELED,
}


class TwilioProvider:
    name = "twilio"

    def __init__(
        self, client: httpx.AsyncClient, account_sid: str, auth_token: str, base_url: str = API_BASE
    ) -> None:
        self._client = client
        self._auth = (account_sid, auth_token)
        self._calls = f"{base_url.rstrip('/')}/2010-04-01/Accounts/{account_sid}/Calls"

    async def dial(self, request: DialRequest) -> str:
        form: dict[str, str | int | list[str]] = {
            "To": request.to_number,
            "From": request.from_number,
            "Url": f"{request.callback_base}/answer",
            "Method": "POST",
            "StatusCallback": f"{request.callback_base}/status",
            "StatusCallbackMethod": "POST",
            "StatusCallbackEvent": list(STATUS_EVENTS),
            "Timeout": request.ring_timeout,
            "TimeLimit": request.time_limit,
            "MachineDetection": "DetectMessageEnd",
            "MachineDetectionTimeout": request.machine_detection_timeout,
        }
        response = await self._send("POST", f"{self._calls}.json", data=form)
        if response.status_code not in (200, 201):
            raise _dial_error(response)
        return str(response.json()["sid"])

    async def hangup(self, provider_call_id: str) -> None:
        response = await self._send(
            "POST", f"{self._calls}/{provider_call_id}.json", data={"Status": "completed"}
        )
        if response.status_code == 404 or _code(response) == "21220":
            return  # already over
        if response.status_code >= 400:
            raise _dial_error(response)

    async def redirect(self, provider_call_id: str, twiml: str) -> None:
        """Have the live call follow `twiml` from now on (an open stream ends). A call
        already over is not an error."""
        response = await self._send(
            "POST", f"{self._calls}/{provider_call_id}.json", data={"Twiml": twiml}
        )
        if response.status_code == 404 or _code(response) == "21220":
            return
        if response.status_code >= 400:
            raise _dial_error(response)

    async def fetch(self, provider_call_id: str) -> ProviderCall | None:
        response = await self._send("GET", f"{self._calls}/{provider_call_id}.json")
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise _dial_error(response)
        try:
            body = response.json()
            duration = body.get("duration")
            return ProviderCall(_STATES[body["status"]], int(duration) if duration else None)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise unreadable("Twilio") from exc

    async def find(
        self, to_number: str, from_number: str, since: datetime, known: Collection[str] = ()
    ) -> list[str]:
        """`GET Calls.json?To=…&From=…`, newest first: every call the account holds, queued
        to ended (a `StartTime` filter would leave out the queued ones, not yet started)."""
        query = {"To": to_number, "From": from_number, "PageSize": FIND_PAGE_SIZE}
        response = await self._send("GET", f"{self._calls}.json", params=query)
        if response.status_code >= 400:
            raise _dial_error(response)
        try:
            return [
                str(call["sid"])
                for call in response.json()["calls"]
                if call["sid"] not in known and parsedate_to_datetime(call["date_created"]) >= since
            ]
        except (ValueError, KeyError, TypeError) as exc:
            raise unreadable("Twilio") from exc

    async def _send(self, method: str, url: str, **kwargs: object) -> httpx.Response:
        try:
            return await self._client.request(method, url, auth=self._auth, **kwargs)  # type: ignore[arg-type]
        except httpx.HTTPError as exc:
            if never_sent(exc):
                raise DialError(DialErrorKind.UNREACHABLE, f"Twilio unreachable: {exc!r}") from exc
            # Sent, perhaps acted on, and no answer heard.
            raise DialError(DialErrorKind.UNAVAILABLE, f"Twilio did not answer: {exc!r}") from exc


def _code(response: httpx.Response) -> str | None:
    try:
        code = response.json().get("code")
    except ValueError:
        return None
    return str(code) if code is not None else None


def _dial_error(response: httpx.Response) -> DialError:
    code = _code(response)
    try:
        message = str(response.json().get("message", response.text))
    except ValueError:
        message = response.text[:200]
    if response.status_code == 429 or code == "20429":
        wait = retry_after_seconds(response.headers.get("Retry-After"))
        return DialError(DialErrorKind.RATE_LIMITED, message, code, wait)
    if response.status_code >= 500:
        return DialError(DialErrorKind.UNAVAILABLE, message, code)
    if code in INVALID_NUMBER_CODES:
        return DialError(DialErrorKind.INVALID_NUMBER, message, code)
    return DialError(DialErrorKind.REJECTED, message, code or str(response.status_code))


class Fields(dict[str, str]):
    """A callback's fields as the SDK's validator reads a multi-dict: through `getall`.

    Given a plain dict, the validator finds each value after two AttributeErrors (it tries
    `getall`, then `getlist`), for every field of the two URLs it signs: half its time."""

    def getall(self, name: str) -> list[str]:
        return [self[name]]


def verify(url: str, params: Mapping[str, str], signature: str | None, auth_token: str) -> bool:
    """Check `X-Twilio-Signature` with the SDK's validator (URL as Twilio requested it)."""
    if not signature:
        return False
    return bool(RequestValidator(auth_token).validate(url, Fields(params), signature))


def verdict(answered_by: str | None) -> Verdict | None:
    """`human`/`unknown` let the assistant speak; `machine_*` and `fax` do not."""
    if not answered_by:
        return None
    if answered_by.startswith("machine") or answered_by == "fax":
        return Verdict.MACHINE
    return Verdict.HUMAN if answered_by == "human" else Verdict.UNKNOWN


def after_the_beep(answered_by: str | None) -> bool:
    """A machine whose greeting is over (`DetectMessageEnd`): a message left now is recorded."""
    return bool(answered_by) and str(answered_by).startswith("machine_end_")


def parse_status(form: Mapping[str, str]) -> CallEvent:
    """A status callback. `SequenceNumber` orders them; duplicates share a dedupe key."""
    status = form.get("CallStatus", "")
    sequence = form.get("SequenceNumber")
    duration = form.get("CallDuration")
    return CallEvent(
        provider_call_id=form.get("CallSid"),
        state=_STATES.get(status),
        verdict=verdict(form.get("AnsweredBy")),
        duration_seconds=int(duration) if duration and duration.isdigit() else None,
        sequence=int(sequence) if sequence and sequence.isdigit() else None,
        # (A failure's SIP code says why; on the other ends, 200, 486, 487 would only stand
        # in for the outcome's own words in `ended_reason`.)
        reason=form.get("SipResponseCode") if status == "failed" else None,
        dedupe_key=f"status:{status}:{sequence}",
    )


def parse_answer(form: Mapping[str, str]) -> CallEvent:
    """The answer request: the call is live, and `AnsweredBy` carries the AMD verdict."""
    return CallEvent(
        provider_call_id=form.get("CallSid"),
        state=CallState.IN_PROGRESS,
        verdict=verdict(form.get("AnsweredBy")) or Verdict.UNKNOWN,
        dedupe_key="answer",
    )
