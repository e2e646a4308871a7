"""Calling hours on the recipient's local clock: DST, overnight windows, days, zones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from outdial.campaign import hours
from outdial.campaign.hours import allowed, check, next_allowed, zones_for, zones_of

NEW_YORK = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
UTC_ZONE = ZoneInfo("UTC")
NYC_NUMBER = "+12125550123"  # area code 212: America/New_York
IDAHO_NUMBER = "+12085550123"  # area code 208: America/Boise and America/Los_Angeles
TOLL_FREE = "+18005550199"  # toll-free: every zone of the +1 plan
INDIA_NUMBER = "+918041234567"  # +91: Asia/Kolkata
SATELLITE = "+883510012345"  # international network: phonenumbers knows no zone


def window(start: str, end: str, **config: Any) -> hours.Window:
    parsed = hours.parse({"start": start, "end": end, **config})
    assert parsed is not None
    return parsed


def at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def open_minutes(win: hours.Window, zones: tuple[ZoneInfo, ...], start: datetime, count: int):
    """The minutes (offsets from `start`) at which the window holds."""
    return [m for m in range(count) if allowed(win, zones, start + timedelta(minutes=m))]


# Parsing -------------------------------------------------------------------------------


def test_parse_reads_the_stored_config_once() -> None:
    parsed = window("09:00", "24:00", days=["fri", "mon"], timezone="Asia/Tokyo")
    assert (parsed.start, parsed.end, parsed.overnight) == (540, 1440, False)
    assert parsed.days == 0b10001
    assert parsed.zones == (ZoneInfo("Asia/Tokyo"),)
    assert parsed.label == "09:00-24:00 mon,fri"
    assert window("09:00", "24:00", days=["fri", "mon"], timezone="Asia/Tokyo") is parsed
    assert window("21:00", "02:00").overnight
    assert hours.parse(None) is None


def test_defaults_are_every_day_the_recipient_zone_and_utc() -> None:
    parsed = window("09:00", "20:00")
    assert parsed.days == 0b1111111
    assert parsed.zones == ()
    assert parsed.default_zone == UTC_ZONE
    assert parsed.label == "09:00-20:00"


def test_an_instant_without_a_zone_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        allowed(window("09:00", "20:00"), (NEW_YORK,), datetime(2026, 11, 27, 12))


# Zones from the number -----------------------------------------------------------------


def test_a_geographic_number_has_its_zone() -> None:
    assert zones_for(NYC_NUMBER, UTC_ZONE) == (NEW_YORK,)


def test_an_indian_number_is_in_kolkata_under_its_current_name() -> None:
    assert zones_for(INDIA_NUMBER, UTC_ZONE) == (ZoneInfo("Asia/Kolkata"),)


def test_a_prefix_spanning_two_zones_gives_both() -> None:
    zones = zones_for(IDAHO_NUMBER, UTC_ZONE)
    assert {zone.key for zone in zones} == {"America/Boise", "America/Los_Angeles"}


def test_a_number_without_a_known_zone_falls_back_to_the_default() -> None:
    paris = ZoneInfo("Europe/Paris")
    assert zones_for(SATELLITE, paris) == (paris,)
    assert zones_for("not a number", paris) == (paris,)
    assert zones_for("+999123", paris) == (paris,)


def test_zone_lookups_are_cached() -> None:
    zones_for.cache_clear()
    first = zones_for(NYC_NUMBER, UTC_ZONE)
    assert zones_for(NYC_NUMBER, UTC_ZONE) is first
    assert zones_for.cache_info().hits == 1


def test_a_fixed_timezone_overrides_the_number() -> None:
    tokyo = window("09:00", "20:00", timezone="Asia/Tokyo")
    assert zones_of(tokyo, NYC_NUMBER) == (ZoneInfo("Asia/Tokyo"),)
    assert zones_of(window("09:00", "20:00"), NYC_NUMBER) == (NEW_YORK,)
    unknown = window("09:00", "20:00", default_timezone="Asia/Dubai")
    assert zones_of(unknown, SATELLITE) == (ZoneInfo("Asia/Dubai"),)


# Plain windows and days ----------------------------------------------------------------


def test_a_day_window_is_start_inclusive_end_exclusive() -> None:
    win, zones = window("09:00", "20:00"), (NEW_YORK,)
    assert not allowed(win, zones, at(2026, 11, 27, 13, 59, 59))  # 08:59:59 EST
    assert allowed(win, zones, at(2026, 11, 27, 14))  # 09:00
    assert allowed(win, zones, at(2026, 11, 28, 0, 59, 59))  # 19:59:59
    assert not allowed(win, zones, at(2026, 11, 28, 1))  # 20:00


def test_days_are_read_on_the_local_calendar() -> None:
    weekdays = window("09:00", "22:00", days=["mon", "tue", "wed", "thu", "fri"])
    monday_utc = at(2026, 11, 30, 2)  # Monday 02:00 UTC is Sunday 21:00 in New York
    assert not allowed(weekdays, (NEW_YORK,), monday_utc)
    assert allowed(weekdays, (UTC_ZONE,), at(2026, 11, 30, 9))
    assert next_allowed(weekdays, (NEW_YORK,), monday_utc) == at(2026, 11, 30, 14)
    mondays = window("00:00", "24:00", days=["mon"])
    sunday_utc = at(2026, 11, 29, 20)  # Sunday 20:00 UTC is Monday 05:00 in Tokyo
    assert allowed(mondays, (ZoneInfo("Asia/Tokyo"),), sunday_utc)
    assert not allowed(mondays, (UTC_ZONE,), sunday_utc)


def test_24_00_closes_at_midnight() -> None:
    win = window("18:00", "24:00", days=["fri"])
    assert allowed(win, (UTC_ZONE,), at(2026, 11, 27, 23, 59, 59))
    assert not allowed(win, (UTC_ZONE,), at(2026, 11, 28, 0))
    assert next_allowed(win, (UTC_ZONE,), at(2026, 11, 28)) == at(2026, 12, 4, 18)


# Overnight windows ---------------------------------------------------------------------


def test_an_overnight_window_belongs_to_the_day_it_starts() -> None:
    friday_night = window("21:00", "02:00", days=["fri"])
    zones = (UTC_ZONE,)
    assert not allowed(friday_night, zones, at(2026, 11, 27, 1))  # Friday 01:00: Thursday's
    assert allowed(friday_night, zones, at(2026, 11, 27, 21))  # Friday 21:00
    assert allowed(friday_night, zones, at(2026, 11, 28, 1, 59))  # Saturday 01:59: Friday's
    assert not allowed(friday_night, zones, at(2026, 11, 28, 2))
    assert not allowed(friday_night, zones, at(2026, 11, 28, 21))  # Saturday's own: not a day
    assert next_allowed(friday_night, zones, at(2026, 11, 28, 2)) == at(2026, 12, 4, 21)


def test_an_overnight_window_in_a_local_zone_crosses_utc_dates() -> None:
    win = window("21:00", "02:00", days=["sat"])  # Saturday night in New York
    assert open_minutes(win, (NEW_YORK,), at(2026, 11, 29), 24 * 60) == list(range(120, 420))


# DST in the United States (America/New_York, 2026-03-08 and 2026-11-01) ---------------------


def test_spring_forward_a_skipped_start_opens_when_the_clock_jumps() -> None:
    win = window("02:30", "05:00")
    zones = (NEW_YORK,)
    assert not allowed(win, zones, at(2026, 3, 8, 6, 59, 59))  # 01:59:59 EST
    assert allowed(win, zones, at(2026, 3, 8, 7))  # 03:00 EDT
    assert next_allowed(win, zones, at(2026, 3, 8, 5)) == at(2026, 3, 8, 7)
    assert next_allowed(win, zones, at(2026, 3, 8, 9, 1)) == at(2026, 3, 9, 6, 30)


def test_spring_forward_a_skipped_end_closes_when_the_clock_jumps() -> None:
    win = window("22:00", "02:30", days=["sat"])  # Saturday night, 2026-03-07
    zones = (NEW_YORK,)
    assert allowed(win, zones, at(2026, 3, 8, 6, 59, 59))  # 01:59:59 EST
    assert not allowed(win, zones, at(2026, 3, 8, 7))  # 03:00 EDT


def test_spring_forward_a_day_window_follows_the_clock() -> None:
    win = window("09:00", "20:00")
    assert next_allowed(win, (NEW_YORK,), at(2026, 3, 7, 2)) == at(2026, 3, 7, 14)  # EST
    assert next_allowed(win, (NEW_YORK,), at(2026, 3, 8, 2)) == at(2026, 3, 8, 13)  # EDT


def test_fall_back_a_window_ending_in_the_repeated_hour_does_not_reopen() -> None:
    win = window("21:00", "01:30", days=["sat"])  # Saturday night, 2026-10-31
    start = at(2026, 11, 1, 5)  # 01:00 EDT; 06:00 UTC is 01:00 EST again
    assert open_minutes(win, (NEW_YORK,), start, 180) == list(range(30))


def test_fall_back_a_window_starting_in_the_repeated_hour_stays_open() -> None:
    win = window("01:30", "06:00")
    start = at(2026, 11, 1, 5)  # 01:00 EDT
    assert open_minutes(win, (NEW_YORK,), start, 420) == list(range(30, 360))  # to 06:00 EST
    assert next_allowed(win, (NEW_YORK,), start) == at(2026, 11, 1, 5, 30)


def test_fall_back_a_day_window_follows_the_clock() -> None:
    win = window("09:00", "20:00")
    assert next_allowed(win, (NEW_YORK,), at(2026, 10, 31, 2)) == at(2026, 10, 31, 13)
    assert next_allowed(win, (NEW_YORK,), at(2026, 11, 1, 2)) == at(2026, 11, 1, 14)


# DST in Europe (Europe/Berlin, 2026-03-29 and 2026-10-25) ----------------------------------


def test_berlin_spring_forward() -> None:
    night = window("22:00", "02:30", days=["sat"])  # Saturday 2026-03-28
    assert allowed(night, (BERLIN,), at(2026, 3, 29, 0, 59))  # 01:59 CET
    assert not allowed(night, (BERLIN,), at(2026, 3, 29, 1))  # 03:00 CEST
    office = window("09:00", "17:00")
    assert next_allowed(office, (BERLIN,), at(2026, 3, 28, 0)) == at(2026, 3, 28, 8)
    assert next_allowed(office, (BERLIN,), at(2026, 3, 29, 0)) == at(2026, 3, 29, 7)


def test_berlin_fall_back() -> None:
    night = window("20:00", "02:30", days=["sat"])  # Saturday 2026-10-24
    start = at(2026, 10, 24, 23)  # 01:00 CEST; 02:00-03:00 repeats from 01:00 UTC
    assert open_minutes(night, (BERLIN,), start, 240) == list(range(90))  # to 02:30 CEST
    assert next_allowed(night, (BERLIN,), at(2026, 10, 25, 1, 10)) == at(
        2026, 10, 31, 19
    )  # CET again


# Multi-zone numbers --------------------------------------------------------------------


def test_a_two_zone_number_dials_only_when_both_clocks_agree() -> None:
    win = window("09:00", "20:00")
    zones = zones_for(IDAHO_NUMBER, UTC_ZONE)  # Mountain and Pacific
    assert not allowed(win, zones, at(2026, 11, 27, 16, 30))  # 09:30 MST, 08:30 PST
    assert allowed(win, zones, at(2026, 11, 27, 17))  # 10:00 MST, 09:00 PST
    assert allowed(win, zones, at(2026, 11, 28, 2, 59))  # 19:59 MST
    assert not allowed(win, zones, at(2026, 11, 28, 3))  # 20:00 MST
    assert next_allowed(win, zones, at(2026, 11, 27, 12)) == at(2026, 11, 27, 17)


def test_zones_whose_windows_never_overlap_never_open() -> None:
    win = window("09:00", "12:00")
    zones = (ZoneInfo("Pacific/Honolulu"), ZoneInfo("Asia/Tokyo"))
    assert next_allowed(win, zones, at(2026, 11, 27)) is None
    wait = check(window("09:00", "10:00"), TOLL_FREE, at(2026, 11, 27))
    assert wait is not None and wait.until is None
    assert wait.reason.startswith("calling hours 09:00-10:00 never hold at once in all")
    assert "and 39 more" in wait.reason


def test_a_window_already_open_in_one_zone_waits_only_for_the_other() -> None:
    night = window("20:00", "08:00")
    tokyo_night = at(2026, 11, 27, 16)  # Tokyo 01:00 (Friday's window), Berlin 17:00
    zones = (ZoneInfo("Asia/Tokyo"), BERLIN)
    assert next_allowed(night, zones, tokyo_night) == at(2026, 11, 27, 19)  # Berlin 20:00


# A whole skipped day (Pacific/Apia went from 2011-12-29 to 2011-12-31) --------------------


def test_a_skipped_day_has_no_window() -> None:
    fridays = window("09:00", "17:00", days=["fri"])
    apia = (ZoneInfo("Pacific/Apia"),)
    thursday = datetime(2011, 12, 29, 12, tzinfo=apia[0])
    expected = datetime(2012, 1, 6, 9, tzinfo=apia[0])
    assert next_allowed(fridays, apia, thursday) == expected


# What the dialer calls -----------------------------------------------------------------


def test_check_is_none_inside_the_window() -> None:
    assert check(window("09:00", "20:00"), NYC_NUMBER, at(2026, 11, 27, 15)) is None
    assert check(None, NYC_NUMBER, at(2026, 11, 27, 3)) is None


def test_check_says_until_when_and_why() -> None:
    win = window("09:00", "20:00", days=["mon", "tue", "wed", "thu", "fri"])
    wait = check(win, NYC_NUMBER, at(2026, 11, 27, 12))
    assert wait == hours.Wait(
        at(2026, 11, 27, 14),
        "outside calling hours (09:00-20:00 mon,tue,wed,thu,fri in America/New_York), "
        "next window 2026-11-27T14:00:00Z",
    )
    assert check(win, NYC_NUMBER, at(2026, 11, 27, 12)) is wait  # one computation per claim


def test_a_wait_time_is_itself_allowed() -> None:
    win = window("09:00", "20:00")
    wait = check(win, IDAHO_NUMBER, at(2026, 11, 27, 12))
    assert wait is not None and wait.until is not None
    assert check(win, IDAHO_NUMBER, wait.until) is None
    assert check(win, IDAHO_NUMBER, wait.until - timedelta(seconds=1)) is not None


def test_next_allowed_is_the_instant_itself_inside_the_window() -> None:
    now = at(2026, 11, 27, 15, 7, 3)
    assert next_allowed(window("09:00", "20:00"), (NEW_YORK,), now) == now
