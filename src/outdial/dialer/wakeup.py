"""Event-driven refill: a freed slot wakes the dialer at once.

In one process an asyncio.Event does it; across processes PostgreSQL's LISTEN/NOTIFY
carries the campaign id (the NOTIFY is sent inside the transaction that freed the slot, by
`dialer/store.lock_attempt`, so it arrives exactly when the change is visible). The
periodic sweep is only a safety net.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg
from sqlalchemy.engine import make_url

CHANNEL = "outdial_dialer"
log = logging.getLogger("outdial.dialer")


class Wakeup:
    """Campaign ids that want attention, and an event that fires when there are any."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.campaigns: set[str] = set()
        self.everything = True

    def campaign(self, campaign_id: str) -> None:
        self.campaigns.add(campaign_id)
        self._event.set()

    def all(self) -> None:
        self.everything = True
        self._event.set()

    async def wait(self, seconds: float) -> None:
        """Until woken, or `seconds`; a timeout asks for a sweep of every campaign."""
        try:
            await asyncio.wait_for(self._event.wait(), seconds)
        except TimeoutError:
            self.everything = True
        self._event.clear()

    def take(self) -> tuple[bool, set[str]]:
        everything, campaigns = self.everything, self.campaigns
        self.everything, self.campaigns = False, set()
        return everything, campaigns


async def listen(database_url: str, wakeup: Wakeup, stopped: asyncio.Event) -> None:
    """Forward NOTIFYs to `wakeup` until stopped; reconnects after a lost connection."""
    dsn = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    while not stopped.is_set():
        try:
            connection = await asyncpg.connect(dsn)
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("dialer cannot listen for wake-ups yet: %s", exc)
            await asyncio.sleep(1)
            continue
        try:
            await connection.add_listener(CHANNEL, lambda *args: wakeup.campaign(str(args[3])))
            await stopped.wait()
        finally:
            with contextlib.suppress(Exception):
                await connection.close()
