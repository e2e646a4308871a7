"""Acting on calls through their provider: wait for in-flight dials, hang calls up, and
find the call a dial placed though its outcome was unknown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from outdial.database import write_transaction
from outdial.models import Call, PhoneNumber
from outdial.models.call import LIVE_STATUSES
from outdial.telephony.base import DialError, Provider
from outdial.telephony.registry import Carriers

log = logging.getLogger("outdial.dialer")
# How far a provider's clock may be behind ours when its calls are read by creation time.
CLOCK_SKEW = timedelta(seconds=60)


async def settle(
    sessionmaker: async_sessionmaker[AsyncSession], campaign_id: str, seconds: float = 5.0
) -> bool:
    """Wait until no dial of the campaign is between its gate and the provider.

    After a pause commits, the dial gate refuses every new dial; a dial that passed the gate
    just before is on its way to the provider. Waiting for those (milliseconds) means that no
    call is placed after `pause` returns.
    """
    sending = (
        select(func.count())
        .select_from(Call)
        .where(
            Call.campaign_id == campaign_id,
            Call.status == "queued",
            Call.dial_started_at.is_not(None),
            Call.provider_call_sid.is_(None),
        )
    )
    for _ in range(int(seconds / 0.02)):
        async with sessionmaker() as session:
            if not await session.scalar(sending):
                return True
        await asyncio.sleep(0.02)
    return False


async def hang_up(
    sessionmaker: async_sessionmaker[AsyncSession], carriers: Carriers, call_ids: Sequence[str]
) -> int:
    """Ask the provider to end these calls; their end arrives as callbacks. Returns how many."""
    async with write_transaction(sessionmaker) as session:
        await session.execute(
            update(Call).where(Call.id.in_(call_ids)).values(hangup_requested=True)
        )
        rows = (
            await session.execute(
                select(Call.id, Call.provider_call_sid, PhoneNumber)
                .join(PhoneNumber, PhoneNumber.id == Call.phone_number_id)
                .where(
                    Call.id.in_(call_ids),
                    Call.status.in_(LIVE_STATUSES),
                    Call.provider_call_sid.is_not(None),
                )
            )
        ).all()
    results = await asyncio.gather(
        *(hang_up_one(carriers, number, str(sid)) for _id, sid, number in rows)
    )
    return sum(results)


async def hang_up_one(carriers: Carriers, number: PhoneNumber, provider_call_id: str) -> bool:
    try:
        await carriers.for_number(number).hangup(provider_call_id)
    except DialError as exc:  # (unreadable credentials too: one call's failure, not the batch's)
        log.warning("hang-up of %s failed: %s", provider_call_id, exc)
        return False
    return True


async def live_calls(session: AsyncSession, campaign_id: str) -> list[str]:
    query = select(Call.id).where(Call.campaign_id == campaign_id, Call.status.in_(LIVE_STATUSES))
    return list((await session.scalars(query)).all())


async def find_placed(
    sessionmaker: async_sessionmaker[AsyncSession],
    provider: Provider,
    *,
    user_id: str,
    to_number: str,
    from_number: str,
    sent_at: datetime,
) -> str | None:
    """The provider's id of the call a dial sent at `sent_at` placed though its outcome was
    unknown (a 5xx, a broken connection, a worker that died on the way): one the provider
    lists between the two numbers since then (`Provider.find`), less those of the account's
    calls to the person and of its live calls, which outdial knows. Raises DialError when the
    provider cannot say."""
    known_query = select(Call.provider_call_sid).where(
        Call.user_id == user_id,
        Call.provider_call_sid.is_not(None),
        (Call.to_number == to_number) | Call.status.in_(LIVE_STATUSES),
    )
    async with sessionmaker() as session:
        known = {sid for sid in await session.scalars(known_query) if sid is not None}
    found = await provider.find(to_number, from_number, sent_at - CLOCK_SKEW, known)
    return found[0] if found else None
