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
import time

import asyncpg
from sqlalchemy.engine import make_url

CHANNEL = "outdial_dialer"
log = logging.getLogger("outdial.dialer")


class Wakeup:
    """Campaign ids that want attention, and an event that fires when there are any.

    Those woken by a NOTIFY (`notified`) are kept apart from those woken in this process
    (`campaign`): a NOTIFY reaches every worker, so a worker may leave it to the one that
    is claiming the campaign already (`Dialer.claim_round`)."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.campaigns: set[str] = set()
        self.notifications: set[str] = set()
        self.everything = True
        self._swept = -float("inf")  # when the last sweep was taken (monotonic clock)

    def campaign(self, campaign_id: str) -> None:
        self.campaigns.add(campaign_id)
        self._event.set()

    def notified(self, campaign_id: str) -> None:
        self.notifications.add(campaign_id)
        self._event.set()

    def all(self) -> None:
        self.everything = True
        self._event.set()

    async def wait(self, seconds: float) -> None:
        """Until woken, or until `seconds` after the last sweep, which then asks for a sweep
        of every campaign: however often others wake the dialer, a campaign nothing wakes
        (its retries coming due, a round that failed) is claimed within `seconds`."""
        left = self._swept + seconds - time.monotonic()
        if left > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), left)
        if time.monotonic() >= self._swept + seconds:
            self.everything = True
        self._event.clear()

    def take(self) -> tuple[bool, set[str], set[str]]:
        """Whether to sweep, the campaigns woken here, those woken by a NOTIFY."""
        taken = self.everything, self.campaigns, self.notifications
        if self.everything:
            self._swept = time.monotonic()
        self.everything, self.campaigns, self.notifications = False, set(), set()
        return taken


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
            await connection.add_listener(CHANNEL, lambda *args: wakeup.notified(str(args[3])))
            await stopped.wait()
        finally:
            with contextlib.suppress(Exception):
                await connection.close()
