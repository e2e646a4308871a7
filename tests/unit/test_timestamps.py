"""Timestamps in responses and events: UTC, a `Z`, six decimals, so that their strings sort
as the instants they name (a client comparing `created_at` with `schedule_end_time` as text
gets the right answer)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import example, given
from hypothesis import strategies as st

from outdial.schemas import format_timestamp

INSTANTS = st.datetimes(
    min_value=datetime(2000, 1, 1),
    max_value=datetime(2100, 1, 1),
    timezones=st.sampled_from(
        [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=3))]
    ),
)


def test_a_whole_second_keeps_its_decimals() -> None:
    assert format_timestamp(datetime(2026, 11, 26, 15, 12, 7, tzinfo=UTC)) == (
        "2026-11-26T15:12:07.000000Z"
    )


def test_other_offsets_are_given_in_utc() -> None:
    kolkata = timezone(timedelta(hours=5, minutes=30))
    instant = datetime(2026, 11, 26, 20, 42, 7, 123456, tzinfo=kolkata)
    assert format_timestamp(instant) == "2026-11-26T15:12:07.123456Z"


@given(INSTANTS, INSTANTS)
@example(
    datetime(2026, 11, 26, 15, 12, 7, tzinfo=UTC), datetime(2026, 11, 26, 15, 12, 7, 5, tzinfo=UTC)
)
def test_strings_sort_as_the_instants(first: datetime, second: datetime) -> None:
    as_text = format_timestamp(first) < format_timestamp(second)
    assert as_text == (first < second)
