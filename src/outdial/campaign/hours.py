"""Calling hours: is a recipient's local clock inside the campaign's window, and if not, when.

A campaign's `calling_hours` is a daily window, `start` to `end` on `days`, read on the
recipient's local clock (`timezone: "recipient"`, the zone found from the number) or on one
fixed IANA zone. The rules, stated once (docs/dialer.md, "Calling hours"):

- **Days.** A window belongs to the day it starts: an overnight window (`start` > `end`,
  e.g. 21:00-02:00 on `fri`) runs from Friday 21:00 to Saturday 02:00.
- **Boundaries.** A window opens at the first instant the local clock shows its start and
  closes at the first instant the clock shows its end. On a spring-forward day a time the
  clock skips (02:30 in New York) is reached when the clock jumps (03:00). On a fall-back
  day a repeated time is reached at its first occurrence, and while the clock repeats an
  hour the window stays as it was just before the clock went back: a window ending at
  01:30 does not reopen for the second 01:00-01:30, one starting at 01:30 stays open.
- **Zones.** A number whose prefix spans several zones is dialed only when the window holds
  in every one of them; a number with no known zone uses `default_timezone`.
- **Horizon.** `next_allowed` looks 8 days ahead; a window that does not open within that
  (zones whose windows never overlap) counts as never.

Every function is pure and cheap: `parse` and `zones_for` are cached, `allowed` costs one
`astimezone` per zone, and `check` memoises the wait of a (window, zones, instant).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import NumberParseException
from phonenumbers.timezone import time_zones_for_number

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
HORIZON = timedelta(days=8)
DAY_MINUTES = 24 * 60
UNKNOWN_ZONE = "Etc/Unknown"  # what phonenumbers answers for a number it cannot place

# Old spellings phonenumbers still uses, shown under their current names (same rules).
_RENAMED = {
    "Africa/Asmera": "Africa/Asmara",
    "America/Buenos_Aires": "America/Argentina/Buenos_Aires",
    "America/Godthab": "America/Nuuk",
    "Asia/Calcutta": "Asia/Kolkata",
    "Asia/Katmandu": "Asia/Kathmandu",
    "Asia/Rangoon": "Asia/Yangon",
    "Asia/Saigon": "Asia/Ho_Chi_Minh",
    "Atlantic/Faeroe": "Atlantic/Faroe",
    "Pacific/Enderbury": "Pacific/Kanton",
    "Pacific/Ponape": "Pacific/Pohnpei",
    "Pacific/Truk": "Pacific/Chuuk",
}

Span = tuple[datetime, datetime]


@dataclass(frozen=True, slots=True)
class Window:
    """A parsed `calling_hours`. Times are minutes after local midnight."""

    start: int  # 0..1439
    end: int  # 0..1440; 1440 is "24:00"
    days: int  # bit d set: a window starts on weekday d (Monday = 0)
    zones: tuple[ZoneInfo, ...]  # the fixed zone, or () for the recipient's own
    default_zone: ZoneInfo
    label: str  # "09:00-20:00", plus the days when not every day

    @property
    def overnight(self) -> bool:
        return self.end < self.start


@dataclass(frozen=True, slots=True)
class Wait:
    """Why a recipient may not be dialed now, and when it may (None: not within 8 days)."""

    until: datetime | None
    reason: str


def parse(config: Mapping[str, Any] | None) -> Window | None:
    """The window of a stored `calling_hours` (as the campaign schema wrote it); None: none."""
    if not config:
        return None
    return _parse(
        config["start"],
        config["end"],
        tuple(config.get("days") or WEEKDAYS),
        config.get("timezone") or "recipient",
        config.get("default_timezone") or "UTC",
    )


@functools.lru_cache(maxsize=1024)
def _parse(start: str, end: str, days: tuple[str, ...], zone: str, default: str) -> Window:
    mask = sum(1 << WEEKDAYS.index(day) for day in set(days))
    label = f"{start}-{end}"
    if mask != 0b1111111:
        label += " " + ",".join(day for day in WEEKDAYS if day in days)
    return Window(
        start=_minutes(start),
        end=_minutes(end),
        days=mask,
        zones=() if zone == "recipient" else (ZoneInfo(zone),),
        default_zone=ZoneInfo(default),
        label=label,
    )


def _minutes(clock: str) -> int:
    hours, minutes = clock.split(":")
    return int(hours) * 60 + int(minutes)


@functools.lru_cache(maxsize=65_536)
def zones_for(e164: str, default: ZoneInfo) -> tuple[ZoneInfo, ...]:
    """The zones `phonenumbers` places an E.164 number in; `(default,)` when it cannot."""
    try:
        number = phonenumbers.parse(e164, None)
    except NumberParseException:
        return (default,)
    names = tuple(name for name in time_zones_for_number(number) if name != UNKNOWN_ZONE)
    return _zones(names) or (default,)


@functools.cache
def _zones(names: tuple[str, ...]) -> tuple[ZoneInfo, ...]:
    zones: dict[str, ZoneInfo] = {}
    for name in names:
        for candidate in (_RENAMED.get(name, name), name):
            try:
                zone = ZoneInfo(candidate)
            except (ZoneInfoNotFoundError, ValueError):
                continue  # a zone this system's tz database does not have
            zones.setdefault(zone.key, zone)
            break
    return tuple(zones.values())


def zones_of(window: Window, e164: str) -> tuple[ZoneInfo, ...]:
    """The zones the window is read in for this recipient: the fixed one, or the number's."""
    return window.zones or zones_for(e164, window.default_zone)


def allowed(window: Window, zones: Sequence[ZoneInfo], instant: datetime) -> bool:
    """Whether the window holds at `instant` (timezone-aware) in every one of `zones`."""
    if instant.utcoffset() is None:
        raise ValueError("instant must be timezone-aware")
    for zone in zones:
        local = instant.astimezone(zone)
        if local.fold:
            local = _before_fall_back(local, zone)
        if not _inside(window, local):
            return False
    return True


def _inside(window: Window, local: datetime) -> bool:
    """The window rule on a wall clock: `start <= time < end` on a day of the window, the
    part of an overnight window after midnight belonging to the day before."""
    minute = local.hour * 60 + local.minute
    day = local.weekday()
    if not window.overnight:
        return window.start <= minute < window.end and bool(window.days & (1 << day))
    if minute >= window.start:
        return bool(window.days & (1 << day))
    return minute < window.end and bool(window.days & (1 << (day - 1) % 7))


def _before_fall_back(local: datetime, zone: ZoneInfo) -> datetime:
    """For an instant in the second pass of a repeated hour: the local time one second
    before the clock went back, i.e. the latest time the clock has shown."""
    back = local.replace(fold=0).utcoffset() - local.utcoffset()  # type: ignore[operator]
    later = math.floor(local.timestamp())
    turn = _transition(zone, later - int(back.total_seconds()), later)
    return datetime.fromtimestamp(turn - 1, zone)


def _transition(zone: ZoneInfo, earlier: int, later: int) -> int:
    """The first second after `earlier` (up to `later`) whose UTC offset differs from
    `earlier`'s, for two epoch seconds one transition apart. Transitions are whole seconds."""
    before = datetime.fromtimestamp(earlier, zone).utcoffset()
    while later - earlier > 1:
        middle = (earlier + later) // 2
        if datetime.fromtimestamp(middle, zone).utcoffset() == before:
            earlier = middle
        else:
            later = middle
    return later


def _reach(zone: ZoneInfo, wall: datetime) -> datetime:
    """The first instant (UTC) at which the clock of `zone` shows the naive `wall` or later:
    the instant itself, its first occurrence when repeated, the jump when skipped."""
    instant = wall.replace(tzinfo=zone).astimezone(UTC)  # fold=0: the first occurrence
    if instant.astimezone(zone).replace(tzinfo=None) == wall:
        return instant
    # Skipped: fold=1 reads it with the later offset, giving an instant before the jump.
    before = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    jump = _transition(zone, math.floor(before.timestamp()), math.ceil(instant.timestamp()))
    return datetime.fromtimestamp(jump, UTC)


def next_allowed(
    window: Window, zones: Sequence[ZoneInfo], instant: datetime, horizon: timedelta = HORIZON
) -> datetime | None:
    """The earliest instant at or after `instant` at which the window holds in every zone
    (`instant` itself when it does, else a UTC datetime), or None when there is none within
    `horizon` (then it never opens: see the module doc)."""
    if allowed(window, zones, instant):
        return instant
    limit = instant + horizon
    at = _first_common([_spans(window, zone, instant, limit) for zone in zones], instant)
    return at if at is not None and at < limit else None


def _spans(window: Window, zone: ZoneInfo, instant: datetime, limit: datetime) -> Iterator[Span]:
    """The zone's windows as UTC [opens, closes) in order, from the one open at `instant`
    (if any) to the last one starting by `limit`."""
    day = instant.astimezone(zone).date() - timedelta(days=1)  # its overnight part may be open
    last = limit.astimezone(zone).date()
    closes_after = window.end + (DAY_MINUTES if window.overnight else 0)
    while day <= last:
        if window.days & (1 << day.weekday()):
            midnight = datetime.combine(day, time())
            opens = _reach(zone, midnight + timedelta(minutes=window.start))
            closes = _reach(zone, midnight + timedelta(minutes=closes_after))
            if closes > opens and closes > instant:  # a window the clock skips is empty
                yield opens, closes
        day += timedelta(days=1)


def _first_common(sources: list[Iterator[Span]], at: datetime) -> datetime | None:
    """The first instant from `at` that lies in a span of every source."""
    current: list[Span | None] = [next(source, None) for source in sources]
    while True:
        latest = at
        for index, source in enumerate(sources):
            span = current[index]
            while span is not None and span[1] <= at:
                span = next(source, None)
            if span is None:
                return None
            current[index] = span
            latest = max(latest, span[0])
        if latest == at:
            return at
        at = latest


# How the reason of a recipient put off until its window opens begins (`reason`).
PUT_OFF = "outside calling hours ("


def reason(window: Window, zones: Sequence[ZoneInfo], until: datetime | None) -> str:
    """What a waiting recipient shows, e.g. `outside calling hours (09:00-20:00 in
    America/New_York), next window 2026-11-27T14:00:00Z`."""
    names = [zone.key for zone in zones]
    where = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    if until is None:
        if len(names) > 1:
            return (
                f"calling hours {window.label} never hold at once in all of this number's "
                f"time zones ({where}) within {HORIZON.days} days"
            )
        return f"calling hours {window.label} do not open in {where} within {HORIZON.days} days"
    when = until.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{PUT_OFF}{window.label} in {where}), next window {when}"


def check(window: Window | None, e164: str, instant: datetime) -> Wait | None:
    """None when the recipient may be dialed at `instant`; otherwise until when and why not.

    The one call the dialer needs per recipient. `Wait.until` is None when the window does
    not open within 8 days in all of the number's zones.
    """
    if window is None:
        return None
    zones = zones_of(window, e164)
    if allowed(window, zones, instant):
        return None
    return _wait(window, zones, instant)


@functools.lru_cache(maxsize=4096)
def _wait(window: Window, zones: tuple[ZoneInfo, ...], instant: datetime) -> Wait:
    """Recipients of one claim share `instant` and mostly their zones: computed once."""
    until = next_allowed(window, zones, instant)
    return Wait(until, reason(window, zones, until))
