"""The provider seam: typed requests and events in, typed results and errors out."""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Protocol

UNREADABLE = "unreadable"  # the code of a DialError for an answer outdial cannot read
RETRY_AFTER_CAP_SECONDS = 300.0  # the longest a provider's Retry-After holds a dial


class CallState(StrEnum):
    """Our call statuses, in the order a call moves through them."""

    QUEUED = "queued"
    INITIATED = "initiated"
    RINGING = "ringing"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    FAILED = "failed"
    CANCELED = "canceled"


LIVE_STATES = frozenset(
    {CallState.QUEUED, CallState.INITIATED, CallState.RINGING, CallState.IN_PROGRESS}
)
FINAL_STATES = frozenset(set(CallState) - LIVE_STATES)
_RANK = {
    CallState.QUEUED: 0,
    CallState.INITIATED: 1,
    CallState.RINGING: 2,
    CallState.IN_PROGRESS: 3,
}


def moves_forward(current: str, proposed: str) -> bool:
    """True when `proposed` is later than `current`: callbacks never move a call backwards."""
    if current in FINAL_STATES:
        return False
    if proposed in FINAL_STATES:
        return True
    return _RANK[CallState(proposed)] > _RANK[CallState(current)]


class Verdict(StrEnum):
    HUMAN = "human"
    MACHINE = "machine"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class DialRequest:
    """Everything an adapter needs to place one call; URLs already carry our call id."""

    call_id: str
    to_number: str
    from_number: str
    callback_base: str
    machine_detection_timeout: int
    ring_timeout: int = 30
    time_limit: int = 3600


# A call's ended reason when the provider refused it for the account's sake (bad
# credentials, no credit, a caller id it does not own): the person was never called.
PROVIDER_REFUSED = "provider_refused"


@dataclass(frozen=True)
class CallEvent:
    """One provider callback, translated: where the call is now and what is known of it."""

    provider_call_id: str | None
    state: CallState | None
    verdict: Verdict | None = None
    duration_seconds: int | None = None
    sequence: int | None = None
    reason: str | None = None
    dedupe_key: str = ""
    # The id of the request that placed the call, where the provider names it apart from the
    # call's (Vobiz `RequestUUID`, the `request_uuid` its dial answered with).
    request_id: str | None = None
    # An account or configuration problem the provider told only as the call ended: the
    # campaign is paused with this message (and a call that never rang, `PROVIDER_REFUSED`,
    # gives its attempt back).
    account_problem: str | None = None


@dataclass(frozen=True)
class ProviderCall:
    """What a provider says about a call when asked (reconciliation)."""

    state: CallState
    duration_seconds: int | None = None


class DialErrorKind(StrEnum):
    RATE_LIMITED = "rate_limited"  # not placed: retry the same attempt after a pause
    UNAVAILABLE = "unavailable"  # outcome unknown (5xx, a broken exchange): look for the call
    UNREACHABLE = "unreachable"  # no connection: the request never left, nothing placed
    INVALID_NUMBER = "invalid_number"  # the destination can never be called
    REJECTED = "rejected"  # configuration or account problem (credentials, caller id, …)


@dataclass
class DialError(Exception):
    kind: DialErrorKind
    message: str
    code: str | None = None
    retry_after: float | None = None
    details: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}" + (f" (code {self.code})" if self.code else "")


def unreadable(provider: str) -> DialError:
    """An answer outdial cannot read (not JSON, a field missing): the provider cannot say."""
    message = f"{provider} answered what outdial cannot read"
    return DialError(DialErrorKind.UNAVAILABLE, message, UNREADABLE)


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """A `Retry-After` header's wait in seconds: a number of seconds or an HTTP date (RFC
    9110), at most `RETRY_AFTER_CAP_SECONDS`; None when absent or not a finite wait (the
    dialer's own back-off applies then)."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if moment.tzinfo is None:  # (an HTTP date is GMT)
            moment = moment.replace(tzinfo=UTC)
        seconds = (moment - (now or datetime.now(UTC))).total_seconds()
        seconds = max(0.0, seconds)
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return min(seconds, RETRY_AFTER_CAP_SECONDS)


class Provider(Protocol):
    """A carrier adapter. Credentials and the HTTP client come through the constructor."""

    name: str

    async def dial(self, request: DialRequest) -> str:
        """Place the call; returns the provider's call id, or raises DialError."""
        ...

    async def hangup(self, provider_call_id: str) -> None:
        """End the call whatever its state; a call already gone is not an error."""
        ...

    async def fetch(self, provider_call_id: str) -> ProviderCall | None:
        """The provider's view of a call, or None when it does not know it."""
        ...

    async def find(
        self, to_number: str, from_number: str, since: datetime, known: Collection[str] = ()
    ) -> list[str]:
        """The ids, other than `known`, of the calls from `from_number` to `to_number` the
        provider created at or after `since`, live or ended: after a dial answered with an
        error that does not say "not placed" (5xx, a broken connection), whether it rang
        after all. Raises DialError when the provider cannot say."""
        ...
