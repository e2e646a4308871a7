"""The dialer worker: claim due recipients, send each dial at its paced time, reap leftovers.

Run embedded in `outdial serve` or alone as `outdial worker`; any number of workers may
share one PostgreSQL. Nothing here holds a transaction or a row lock across a provider call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
from collections.abc import Awaitable
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from outdial.config import Settings
from outdial.database import write_transaction
from outdial.dialer import claim as claiming
from outdial.dialer import reaper, store
from outdial.dialer.sender import DialerSettings, Sender
from outdial.dialer.statistics import FirstStatistics
from outdial.dialer.wakeup import Wakeup
from outdial.models import Campaign, utcnow
from outdial.pre_dial.service import PreDialChecker
from outdial.telephony.registry import Carriers

log = logging.getLogger("outdial.dialer")


def dialer_settings(settings: Settings) -> DialerSettings:
    lease = timedelta(seconds=settings.dialer_lease_seconds)
    return DialerSettings(
        public_base_url=settings.resolved_public_base_url,
        sweep_seconds=settings.dialer_sweep_seconds,
        reap_seconds=settings.dialer_reap_seconds,
        lease=lease,
        daily_cap=settings.max_calls_per_number_per_day,
        patience=reaper.Patience(
            unconfirmed=lease,
            silent_ringing=timedelta(seconds=settings.dialer_silence_seconds),
            silent_live=timedelta(seconds=settings.dialer_silence_seconds * 5),
        ),
    )


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{random.randrange(16**6):06x}"


class Dialer:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        carriers: Carriers,
        settings: DialerSettings,
        wakeup: Wakeup | None = None,
        pre_dial: PreDialChecker | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.carriers = carriers
        self.settings = settings
        self.stopped = asyncio.Event()
        self.sender = Sender(sessionmaker, carriers, settings, pre_dial, self.stopped)
        self.wakeup = wakeup or Wakeup()
        self.statistics = FirstStatistics(sessionmaker)
        self.name = worker_name()
        self._sends: set[asyncio.Task[None]] = set()
        # Campaigns another worker was found claiming, and until when (the event loop's
        # clock) their NOTIFYs are left to it.
        self._elsewhere: dict[str, float] = {}

    async def run(self) -> None:
        """Claim and dial until stopped; reap on its own schedule. Stopping, claim no more and
        drain: dials waiting for their paced moment or for a send again are given back (due at
        once), and dials on their way to the provider have `drain_seconds` to get their
        answers recorded; what is left then is the reaper's, as after a crash."""
        reaping = asyncio.create_task(self._reap_forever())
        gathering = asyncio.create_task(self._gather_statistics())
        try:
            while not self.stopped.is_set():
                try:
                    await self.claim_round()
                except (DBAPIError, OSError) as exc:
                    log.warning("claim round failed, retrying: %s", exc)
                except Exception:  # a round's surprise (a pool timeout) must not end dialing
                    log.exception("claim round failed, retrying")
                await self.wakeup.wait(self.settings.sweep_seconds)
        finally:
            self.stopped.set()  # (also when the loop ended otherwise: the sends must hear it)
            reaping.cancel()
            gathering.cancel()
            await self._drain()
            await asyncio.gather(reaping, gathering, return_exceptions=True)

    async def _drain(self) -> None:
        sends = set(self._sends)
        if sends:
            log.info("dialer stopping: %d dials to finish", len(sends))
            _, late = await asyncio.wait(sends, timeout=self.settings.drain_seconds)
            for task in late:
                task.cancel()
            if late:
                log.warning("dialer stopped with %d dials unfinished (the reaper's)", len(late))
            await asyncio.gather(*sends, return_exceptions=True)

    def stop(self) -> None:
        self.stopped.set()
        self.wakeup.all()

    async def claim_round(self) -> None:
        everything, campaigns, notified = self.wakeup.take()
        if everything:
            campaigns |= notified | await self._running_campaigns()
        else:
            campaigns |= self._not_claimed_elsewhere(notified)
        for campaign_id in campaigns:
            try:
                await self._claim_campaign(campaign_id)
            except (DBAPIError, OSError):
                raise  # the database or the network: the round is retried whole
            except Exception:  # one campaign's surprise (a pool timeout) must not stop others
                log.exception(
                    "claim of campaign %s failed; the next sweep tries it again", campaign_id
                )

    def _not_claimed_elsewhere(self, notified: set[str]) -> set[str]:
        """The notified campaigns this worker should claim: not those it lately found
        another worker claiming. That worker hears the same NOTIFY, and having claimed when
        it came, claims again after (every claim reads the counters afresh), so the slot is
        filled; trying here too would only find the claim lock taken, a transaction spent
        for nothing by every other worker at the end of every call. Should that worker die,
        its campaigns are claimed here again within `sweep_seconds`."""
        now = asyncio.get_running_loop().time()
        for campaign_id, until in list(self._elsewhere.items()):
            if until <= now:
                del self._elsewhere[campaign_id]
        return notified - self._elsewhere.keys()

    async def _running_campaigns(self) -> set[str]:
        async with self.sessionmaker() as session:
            rows = await session.scalars(select(Campaign.id).where(Campaign.status == "running"))
            return set(rows.all())

    async def _claim_campaign(self, campaign_id: str) -> None:
        now = utcnow()
        try:
            async with write_transaction(self.sessionmaker) as session:
                claimable = await claiming.lock_running_campaign(session, campaign_id)
                if claimable == claiming.ELSEWHERE:
                    until = asyncio.get_running_loop().time() + self.settings.sweep_seconds
                    self._elsewhere[campaign_id] = until
                    return
                self._elsewhere.pop(campaign_id, None)
                if not isinstance(claimable, claiming.Claimable):
                    return  # not running
                campaign = claimable.campaign
                if campaign.schedule_end_time is not None and now >= campaign.schedule_end_time:
                    await claiming.lock_for_change(session, campaign.id)
                    await store.expire_waiting(session, campaign, now)
                    return
                if campaign.schedule_start_time is not None and now < campaign.schedule_start_time:
                    return
                taken = await claiming.claim(
                    session,
                    claimable,
                    self.name,
                    now,
                    self.settings.lease,
                    self.carriers.call_secrets,
                    daily_cap=self.settings.daily_cap,
                )
        except IntegrityError:
            # Another worker just opened a call to one of these numbers; try again soon.
            self.wakeup.campaign(campaign_id)
            return
        if taken.again:
            self.wakeup.campaign(campaign_id)
        for job in taken.jobs:
            self._spawn(self._send(job))

    async def _send(self, job: claiming.DialJob) -> None:
        sent = await self.sender.send(job)
        # A dial given back freed its slot; a round that left slots for later wants another.
        # (A slot freed by a call's end wakes the dialer through its callback.)
        if job.campaign_id and (job.claim_again or not sent):
            self.wakeup.campaign(job.campaign_id)

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._sends.add(task)
        task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        """A send that crashed is left to the reaper, which ends or returns its attempt."""
        self._sends.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("dial task failed", exc_info=task.exception())

    async def _gather_statistics(self) -> None:
        """A new database's first statistics, on the reaper's schedule until every busy table
        has them; apart from the reaper, which an `ANALYZE` waiting for a lock must not hold
        up."""
        while self.statistics.waiting and not self.stopped.is_set():
            try:
                await self.statistics.gather()
            except (DBAPIError, OSError) as exc:
                log.warning("gathering first statistics failed, retrying: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopped.wait(), self.settings.reap_seconds)

    async def _reap_forever(self) -> None:
        while not self.stopped.is_set():
            try:
                woken = await reaper.reap(
                    self.sessionmaker, self.carriers, utcnow(), self.settings.patience
                )
                for campaign_id in woken:
                    self.wakeup.campaign(campaign_id)
            except (DBAPIError, OSError) as exc:
                log.warning("reaper round failed: %s", exc)
            except Exception:  # a round's surprise must not end the rounds to come
                log.exception("reaper round failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopped.wait(), self.settings.reap_seconds)
