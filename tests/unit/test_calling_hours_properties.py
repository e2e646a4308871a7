"""Calling hours against a brute-force oracle, for random windows, days, zones and instants.

The oracle reads the rule as the docs state it, by other means than the module: an instant
is inside when the latest local time the clock has shown so far (found by looking back
minute by minute) lies in a window [start, end) of a window day, as datetimes. Instants
are drawn near real DST transitions (found here by scanning offsets) as well as anywhere.
"""

from __future__ import annotations

import functools
import math
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import example, given, settings
from hypothesis import strategies as st

from outdial.campaign import hours
from outdial.campaign.hours import allowed, next_allowed

ZONES = [
    "America/New_York",
    "Europe/Berlin",
    "America/Santiago",  # southern hemisphere; changes at local midnight
    "America/Havana",  # changes at local midnight, back to the day before
    "Australia/Lord_Howe",  # half-hour DST
    "Antarctica/Troll",  # two-hour DST
    "Pacific/Apia",  # skipped 2011-12-30 entirely
    "Pacific/Chatham",  # +12:45
    "Asia/Kathmandu",  # +05:45, no DST
    "America/St_Johns",  # -03:30
    "Africa/Casablanca",  # DST suspended each Ramadan
    "Asia/Kolkata",
    "UTC",
]
FIRST, LAST = datetime(2010, 1, 1, tzinfo=UTC), datetime(2031, 1, 1, tzinfo=UTC)
LOOK_BACK = timedelta(hours=3)  # longer than any backward change of these zones since 2010


@functools.cache
def transitions(name: str) -> tuple[datetime, ...]:
    """Every UTC offset change of the zone between FIRST and LAST, to the second (none of
    these zones changes twice within a day)."""
    zone, found = ZoneInfo(name), []
    hour = FIRST
    while hour < LAST:
        following = hour + timedelta(days=1)
        if hour.astimezone(zone).utcoffset() != following.astimezone(zone).utcoffset():
            low, high = hour, following
            while high - low > timedelta(seconds=1):
                middle = low + (high - low) / 2
                middle = middle.replace(microsecond=0)
                if middle.astimezone(zone).utcoffset() == low.astimezone(zone).utcoffset():
                    low = middle
                else:
                    high = middle
            found.append(high)
        hour = following
    return tuple(found)


def test_the_zones_change_back_by_less_than_the_oracle_looks() -> None:
    for name in ZONES:
        zone = ZoneInfo(name)
        for change in transitions(name):
            before = (change - timedelta(seconds=1)).astimezone(zone).utcoffset()
            after = change.astimezone(zone).utcoffset()
            assert before is not None and after is not None
            assert before - after < LOOK_BACK, (name, change)
            assert change.second == 0, (name, change)  # boundaries fall on whole minutes


def latest_shown(zone: ZoneInfo, instant: datetime) -> datetime:
    """The latest local wall time the zone's clock has shown up to `instant`."""
    steps = int(LOOK_BACK / timedelta(minutes=1))
    return max(
        (instant - timedelta(minutes=k)).astimezone(zone).replace(tzinfo=None)
        for k in range(steps + 1)
    )


def oracle_inside(start: int, end: int, days: list[str], wall: datetime) -> bool:
    for day in (wall.date() - timedelta(days=1), wall.date()):
        if hours.WEEKDAYS[day.weekday()] not in days:
            continue
        midnight = datetime.combine(day, time())
        opens = midnight + timedelta(minutes=start)
        closes = midnight + timedelta(minutes=end if end > start else end + 24 * 60)
        if opens <= wall < closes:
            return True
    return False


def oracle(start: int, end: int, days: list[str], zones: list[str], instant: datetime) -> bool:
    return all(
        oracle_inside(start, end, days, latest_shown(ZoneInfo(name), instant)) for name in zones
    )


def clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


@st.composite
def windows(draw: st.DrawFn) -> tuple[int, int, list[str]]:
    start = draw(st.integers(0, 24 * 60 - 1))
    end = draw(st.integers(0, 24 * 60).filter(lambda end: end != start))
    days = draw(st.lists(st.sampled_from(hours.WEEKDAYS), min_size=1, max_size=7, unique=True))
    return start, end, days


zone_lists = st.lists(st.sampled_from(ZONES), min_size=1, max_size=3, unique=True)


@st.composite
def instants(draw: st.DrawFn, zones: list[str]) -> datetime:
    """Anywhere in 2010-2030, or within three days of one of the zones' DST changes."""
    changes = [change for name in zones for change in transitions(name)]
    seconds = draw(st.integers(0, 59))
    if changes and draw(st.booleans()):
        change = draw(st.sampled_from(changes))
        return change + timedelta(minutes=draw(st.integers(-3 * 1440, 3 * 1440)), seconds=seconds)
    minutes = draw(st.integers(0, int((LAST - FIRST) / timedelta(minutes=1)) - 1))
    return FIRST + timedelta(minutes=minutes, seconds=seconds)


def parsed(start: int, end: int, days: list[str]) -> hours.Window:
    window = hours.parse({"start": clock(start), "end": clock(end), "days": days})
    assert window is not None
    return window


places = zone_lists.flatmap(lambda zones: st.tuples(st.just(zones), instants(zones)))
Window = tuple[int, int, list[str]]
Place = tuple[list[str], datetime]
NEW_YORK_FALL_BACK = datetime(2026, 11, 1, 6, 10, tzinfo=UTC)  # 01:10 EST, the second time


@settings(max_examples=400, deadline=None)
@given(windows(), places)
@example((21 * 60, 90, ["sat"]), (["America/New_York"], NEW_YORK_FALL_BACK))
@example((90, 360, ["sun"]), (["America/New_York"], NEW_YORK_FALL_BACK))
@example((0, 1440, ["fri"]), (["Pacific/Apia"], datetime(2011, 12, 30, 10, tzinfo=UTC)))
def test_allowed_agrees_with_the_oracle(window: Window, place: Place) -> None:
    (start, end, days), (zones, instant) = window, place
    win = parsed(start, end, days)
    infos = tuple(ZoneInfo(name) for name in zones)
    for moment in (instant, *boundaries(start, end, infos[0], instant)):
        assert allowed(win, infos, moment) == oracle(start, end, days, zones, moment), moment


def boundaries(start: int, end: int, zone: ZoneInfo, instant: datetime) -> list[datetime]:
    """Instants around the window's start and end near `instant` on the zone's clock."""
    today = datetime.combine(instant.astimezone(zone).date(), time())
    found = []
    for day in (-1, 0, 1):
        for minutes in (start, end):
            wall = today + timedelta(days=day, minutes=minutes)
            for fold in (0, 1):
                edge = wall.replace(tzinfo=zone, fold=fold).astimezone(UTC)
                found += [edge - timedelta(seconds=1), edge, edge + timedelta(seconds=1)]
    return found


@settings(max_examples=150, deadline=None)
@given(windows(), places)
@example((150, 300, ["sun"]), (["America/New_York"], datetime(2026, 3, 8, 5, tzinfo=UTC)))
@example((540, 720, list(hours.WEEKDAYS)), (["Pacific/Honolulu", "Asia/Tokyo"], NEW_YORK_FALL_BACK))
def test_next_allowed_is_the_first_allowed_minute(window: Window, place: Place) -> None:
    (start, end, days), (zones, instant) = window, place
    win = parsed(start, end, days)
    infos = tuple(ZoneInfo(name) for name in zones)
    found = next_allowed(win, infos, instant)
    stop = found if found is not None else instant + hours.HORIZON
    first_minute = instant.replace(second=0) + timedelta(minutes=1)
    minutes = max(0, math.ceil((stop - first_minute) / timedelta(minutes=1)))
    before = [instant] + [first_minute + timedelta(minutes=k) for k in range(minutes)]
    assert not any(allowed(win, infos, moment) for moment in before if moment < stop)
    if found is None:
        return
    assert instant <= found < instant + hours.HORIZON
    assert allowed(win, infos, found)
    assert oracle(start, end, days, zones, found)
    if found > instant:
        assert not oracle(start, end, days, zones, found - timedelta(seconds=1))
