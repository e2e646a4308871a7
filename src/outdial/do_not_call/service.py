"""Do-not-call: add, read, remove; and what the dialer asks right before a dial.

`blocked_numbers` and `add_opt_out` are the dialer's and the voice runtime's entry points;
the rest serves the API.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from outdial.do_not_call import repository
from outdial.do_not_call.schemas import DoNotCallAdd, DoNotCallAdded
from outdial.errors import Invalid, NotFound
from outdial.models import DoNotCallEntry, utcnow
from outdial.phones import InvalidPhoneNumber, normalize_e164
from outdial.repository import page_of
from outdial.schemas import Page

DNC = "dnc"
DAILY_CAP = "daily_cap"
LIVE = "live"
OPT_OUT_REASON = "opted out during a call"
_MAX_REPORTED = 100


def _entry_number(raw: str, region: str) -> str:
    """The number a path names; one that cannot be a phone number is simply not listed."""
    try:
        return normalize_e164(raw, region)
    except InvalidPhoneNumber:
        raise NotFound("Do-not-call entry") from None


def _normalized(raw: list[str], region: str, single: bool) -> list[str]:
    """E.164 numbers without repeats, in the order given; 422 listing every bad one."""
    numbers: dict[str, None] = {}
    problems = []
    for index, text in enumerate(raw):
        try:
            numbers[normalize_e164(text, region)] = None
        except InvalidPhoneNumber as exc:
            location = ["body", "phone_number"] if single else ["body", "phone_numbers", index]
            problems.append({"loc": location, "msg": str(exc), "type": "value_error"})
    if problems:
        raise Invalid.many(problems[:_MAX_REPORTED])
    return list(numbers)


async def add(
    session: AsyncSession, user_id: str, body: DoNotCallAdd, region: str
) -> DoNotCallAdded:
    """Put numbers on the list; numbers already there keep their entry. All or nothing."""
    numbers = _normalized(body.numbers, region, single=body.phone_number is not None)
    added = await repository.insert(
        session, user_id, [(n, body.reason) for n in numbers], "api", utcnow()
    )
    return DoNotCallAdded(
        added=len(added), already_listed=len(numbers) - len(added), phone_numbers=numbers
    )


async def get(session: AsyncSession, user_id: str, raw_number: str, region: str) -> DoNotCallEntry:
    entry = await repository.get(session, user_id, _entry_number(raw_number, region))
    if entry is None:
        raise NotFound("Do-not-call entry")
    return entry


async def remove(session: AsyncSession, user_id: str, raw_number: str, region: str) -> None:
    if not await repository.remove(session, user_id, _entry_number(raw_number, region)):
        raise NotFound("Do-not-call entry")


async def page(
    session: AsyncSession, user_id: str, page: Page
) -> tuple[Sequence[DoNotCallEntry], int]:
    """Newest entries first."""
    return await page_of(
        session,
        repository.listing(user_id),
        page,
        DoNotCallEntry.created_at.desc(),
        DoNotCallEntry.phone_number,
    )


async def blocked_numbers(
    session: AsyncSession,
    user_id: str,
    numbers: list[str],
    now: datetime,
    *,
    daily_cap: int | None,
) -> dict[str, str]:
    """number → `"dnc"` or `"daily_cap"` for each of `numbers` (E.164) that must not be dialed.

    `"dnc"`: the number is on the account's do-not-call list. `"daily_cap"`: the account
    has placed `daily_cap` calls (or more) to it in the 24 hours before `now` (a call the
    provider never received does not count; calls being claimed in the caller's own
    transaction do). A number that is both is `"dnc"`. `daily_cap` None or 0: no cap.
    One statement, two index lookups; meant for the claim transaction.
    """
    found = await screened(session, user_id, numbers, now, daily_cap=daily_cap)
    return {number: DNC if DNC in reasons else DAILY_CAP for number, reasons in found.items()}


async def screened(
    session: AsyncSession,
    user_id: str,
    numbers: list[str],
    now: datetime,
    *,
    daily_cap: int | None,
    live: bool = False,
) -> dict[str, set[str]]:
    """number → every reason it may not be dialed now: `"dnc"` and `"daily_cap"` as in
    `blocked_numbers`, and, with `live`, `"live"` (the account has a live call to it).
    One statement."""
    if not numbers:
        return {}
    found: dict[str, set[str]] = defaultdict(set)
    rows = await repository.blocked(session, user_id, numbers, now, daily_cap, live=live)
    for number, reason in rows:
        found[number].add(reason)
    return dict(found)


async def daily_cap_frees_at(
    session: AsyncSession,
    user_id: str,
    numbers: list[str],
    now: datetime,
    *,
    daily_cap: int,
) -> dict[str, datetime]:
    """For numbers held by the daily cap: the moment the next call to each is allowed again.

    That is when the `daily_cap`-th most recent counted call turns 24 hours old. Numbers
    under the cap are left out.
    """
    if not numbers or daily_cap < 1:
        return {}
    times: dict[str, list[datetime]] = defaultdict(list)
    for number, created in await repository.recent_call_times(session, user_id, numbers, now):
        times[number].append(created)
    return {
        number: sorted(created, reverse=True)[daily_cap - 1] + repository.DAY
        for number, created in times.items()
        if len(created) >= daily_cap
    }


async def add_opt_out(
    session: AsyncSession,
    user_id: str,
    number: str,
    reason: str | None = OPT_OUT_REASON,
    *,
    call_id: str | None = None,
) -> bool:
    """Put a number that opted out during a call on the list; True when it was not there.

    Idempotent: a number already listed keeps its first entry. `number` is E.164 (a
    call's `to_number`). Runs in the caller's transaction.
    """
    added = await repository.insert(
        session, user_id, [(number, reason)], "opt_out", utcnow(), call_id
    )
    return bool(added)
