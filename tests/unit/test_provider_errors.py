"""What a provider's error answer becomes: the kind, the wait a 429 asks for, and whether the
reaper takes it as the whole account's."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from outdial.dialer import reaper
from outdial.telephony import twilio, vobiz
from outdial.telephony.base import (
    RETRY_AFTER_CAP_SECONDS,
    DialError,
    DialErrorKind,
    retry_after_seconds,
    unreadable,
)

NOW = datetime(2026, 12, 7, 16, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "wait"),
    [
        ("120", 120.0),
        ("0.5", 0.5),
        ("Mon, 07 Dec 2026 16:00:30 GMT", 30.0),  # an HTTP date: seconds from now
        ("Mon, 07 Dec 2026 15:59:00 GMT", 0.0),  # already past
        ("Mon, 07 Dec 2026 16:01:00 -0000", 60.0),  # no zone of its own: GMT
        ("86400", RETRY_AFTER_CAP_SECONDS),
        ("1e400", None),
        ("Mon, 07 Dec 2026 16:00:30 +99999999999999", None),
        (None, None),
        ("", None),
        ("soon", None),
        ("inf", None),
        ("nan", None),
        ("-5", None),
    ],
)
def test_a_retry_after_is_seconds_or_an_http_date(header: str | None, wait: float | None) -> None:
    assert retry_after_seconds(header, NOW) == wait


@pytest.mark.parametrize("dial_error", [twilio._dial_error, vobiz._dial_error])
def test_a_429_with_a_date_to_retry_after_is_a_rate_limit_not_a_crash(dial_error: object) -> None:
    response = httpx.Response(
        429,
        json={"code": 20429, "message": "Too Many Requests"},
        headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"},
    )
    error = dial_error(response)  # type: ignore[operator]
    assert error.kind is DialErrorKind.RATE_LIMITED and error.retry_after == 0.0


def test_only_an_outage_stops_a_reaper_round_for_the_whole_account() -> None:
    assert reaper._whole_account(DialError(DialErrorKind.UNAVAILABLE, "503", "503"))
    assert reaper._whole_account(DialError(DialErrorKind.UNREACHABLE, "no connection"))
    assert reaper._whole_account(DialError(DialErrorKind.RATE_LIMITED, "429", "429"))
    assert not reaper._whole_account(unreadable("Twilio"))  # (UNAVAILABLE, but the one call's)
    assert not reaper._whole_account(DialError(DialErrorKind.REJECTED, "400", "400"))
