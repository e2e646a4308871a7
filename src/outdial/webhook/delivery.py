"""The delivery worker: claim due deliveries, POST them signed, record every attempt.

Runs in `outdial serve` and in each `outdial worker` (OUTDIAL_WEBHOOKS); several may share a
PostgreSQL, since claims skip each other's rows. Delivery is at least once: a worker that
stops before recording an answer leaves its deliveries to be sent again when their lease
ends, with the same event id, which receivers use to drop repeats. No transaction is open
while a POST is on its way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta

import httpx
from prometheus_client import Counter
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from outdial import http
from outdial.config import Settings
from outdial.database import write_transaction
from outdial.metrics import registry
from outdial.models import utcnow
from outdial.secrets_store import CredentialBox
from outdial.webhook import events, repository, signing
from outdial.webhook.repository import Claimed, Result
from outdial.webhook.service import open_secret

log = logging.getLogger("outdial.webhooks")

EVENT_ID_HEADER = "X-Outdial-Event-Id"
EVENT_TYPE_HEADER = "X-Outdial-Event-Type"
ATTEMPT_HEADER = "X-Outdial-Delivery-Attempt"
RESPONSE_CHARACTERS = 1_000
PURGE_EVERY_SECONDS = 3600
STOP_GRACE_SECONDS = 5.0

webhook_attempts = Counter(
    "outdial_webhook_attempts",
    "Webhook POSTs, by result (succeeded: a 2xx answer).",
    ["result"],
    registry=registry,
)


@dataclass(frozen=True)
class DeliverySettings:
    public_base_url: str
    timeout: float = 10.0
    lease: timedelta = timedelta(seconds=60)
    max_attempts: int = 16
    retry_base: float = 10.0
    retry_max: float = 6 * 3600.0
    poll_seconds: float = 1.0
    concurrency: int = 20
    retention: timedelta = timedelta(days=30)


def delivery_settings(settings: Settings) -> DeliverySettings:
    return DeliverySettings(
        public_base_url=settings.resolved_public_base_url,
        timeout=settings.webhook_timeout_seconds,
        lease=timedelta(seconds=settings.webhook_lease_seconds),
        max_attempts=settings.webhook_max_attempts,
        retry_base=settings.webhook_retry_base_seconds,
        retry_max=settings.webhook_retry_max_seconds,
        poll_seconds=settings.webhook_poll_seconds,
        retention=timedelta(days=settings.webhook_retention_days),
    )


def retry_delay(
    attempt: int, base: float, cap: float, draw: Callable[[], float] = random.random
) -> float:
    """Seconds to wait after failed attempt `attempt` (1, 2, …): exponential, with jitter.

    The nominal wait doubles from `base` up to `cap`; the actual one is drawn between half
    of it and all of it, so endpoints that failed together are not retried in lockstep.
    """
    nominal = min(cap, base * 2 ** min(attempt - 1, 62))
    return nominal / 2 + draw() * nominal / 2


def retry_after(response: httpx.Response) -> float | None:
    """`Retry-After` in seconds, from a 429 or 503 that sent one (HTTP dates are ignored)."""
    if response.status_code not in (429, 503):
        return None
    try:
        return max(0.0, float(response.headers.get("retry-after", "")))
    except ValueError:
        return None


async def _read_some(response: httpx.Response) -> str:
    """The start of the answer, for the log; the rest is not read."""
    received = b""
    async for chunk in response.aiter_bytes():
        received += chunk
        if len(received) >= RESPONSE_CHARACTERS * 4:
            break
    return received.decode("utf-8", "replace")[:RESPONSE_CHARACTERS]


class Deliverer:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        box: CredentialBox,
        client: httpx.AsyncClient,
        settings: DeliverySettings,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.box = box
        self.client = client
        self.settings = settings
        self._stopped = asyncio.Event()
        self._wake = asyncio.Event()
        self._sends: set[asyncio.Task[None]] = set()
        self._next_purge = 0.0

    async def run(self) -> None:
        """Deliver until stopped. Cancelled (as if killed), it drops its sends unrecorded."""
        try:
            while not self._stopped.is_set():
                try:
                    claimed = await self._claim_round()
                    await self._purge_when_due()
                except (DBAPIError, OSError) as exc:
                    log.warning("webhook delivery round failed, retrying: %s", exc)
                    claimed = 0
                except Exception:  # a round's surprise (a pool timeout) must not end delivery
                    log.exception("webhook delivery round failed, retrying")
                    claimed = 0
                if not claimed:
                    await self._idle()
        finally:
            await self._settle_sends(graceful=self._stopped.is_set())

    def stop(self) -> None:
        self._stopped.set()
        self._wake.set()

    async def deliver_due(self) -> int:
        """One round, to the end: claim what is due now and send it all; how many."""
        token = secrets.token_hex(16)
        claimed = await self._claim(self.settings.concurrency, token)
        await asyncio.gather(*(self._deliver(item, token) for item in claimed))
        return len(claimed)

    async def _claim_round(self) -> int:
        free = self.settings.concurrency - len(self._sends)
        if free <= 0:
            return 0
        token = secrets.token_hex(16)
        claimed = await self._claim(free, token)
        for item in claimed:
            task = asyncio.create_task(self._deliver(item, token))
            self._sends.add(task)
            task.add_done_callback(self._sent)
        return len(claimed)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._sends.discard(task)
        self._wake.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("webhook delivery task failed", exc_info=task.exception())

    async def _idle(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self.settings.poll_seconds)
        self._wake.clear()

    async def _settle_sends(self, graceful: bool) -> None:
        """A graceful stop lets sends under way finish for a moment; the rest are cancelled
        and their deliveries go out again once their lease ends."""
        if graceful and self._sends:
            await asyncio.wait(self._sends, timeout=STOP_GRACE_SECONDS)
        for task in list(self._sends):
            task.cancel()
        await asyncio.gather(*self._sends, return_exceptions=True)

    async def _claim(self, limit: int, token: str) -> list[Claimed]:
        now = utcnow()
        async with self.sessionmaker() as session:
            if not await repository.any_due(session, now):
                return []
        async with write_transaction(self.sessionmaker) as session:
            return await repository.claim_due(session, now, now + self.settings.lease, token, limit)

    async def _deliver(self, claimed: Claimed, token: str) -> None:
        result, wait_asked = await self._post(claimed)
        webhook_attempts.labels("succeeded" if result.succeeded else "failed").inc()
        now = utcnow()
        retry_at = None
        if not result.succeeded and claimed.attempt < self.settings.max_attempts:
            delay = retry_delay(claimed.attempt, self.settings.retry_base, self.settings.retry_max)
            if wait_asked is not None:
                delay = max(delay, min(wait_asked, self.settings.retry_max))
            retry_at = now + timedelta(seconds=delay)
        try:
            async with write_transaction(self.sessionmaker) as session:
                held = await repository.finish(session, claimed, token, result, now, retry_at)
        except (DBAPIError, OSError) as exc:
            log.warning(
                "recording delivery %s failed; it will be sent again: %s", claimed.delivery_id, exc
            )
            return
        if not held:
            log.info("delivery %s was taken over after its lease ended", claimed.delivery_id)

    async def _post(self, claimed: Claimed) -> tuple[Result, float | None]:
        """POST the event once; the result for the log and any wait the endpoint asked for."""
        try:
            secret = open_secret(self.box, claimed.sealed_secret)
        except RuntimeError as exc:
            return Result(None, f"cannot sign the event: {exc}", None, 0), None
        body = events.render(
            claimed.event_id,
            claimed.type,
            claimed.created_at,
            claimed.data,
            self.settings.public_base_url,
        )
        headers = signing.signed_headers(secret, int(time.time()), body) | {
            EVENT_ID_HEADER: claimed.event_id,
            EVENT_TYPE_HEADER: claimed.type,
            ATTEMPT_HEADER: str(claimed.attempt),
        }
        started = time.monotonic()
        try:
            async with (
                asyncio.timeout(self.settings.timeout),
                self.client.stream("POST", claimed.url, content=body, headers=headers) as response,
            ):
                text = await _read_some(response)
        except (TimeoutError, httpx.TimeoutException):
            silent = f"no answer within {self.settings.timeout:g} s"
            return Result(None, silent, None, _elapsed_ms(started)), None
        except Exception as exc:
            # A URL httpx refuses, a broken connection…: every way a POST can fail is a
            # failed attempt, recorded and retried by the rules, never a delivery left hanging.
            broken = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return Result(None, broken[:500], None, _elapsed_ms(started)), None
        status = response.status_code
        refused = None if 200 <= status < 300 else f"HTTP {status}"
        return Result(status, refused, text, _elapsed_ms(started)), retry_after(response)

    async def _purge_when_due(self) -> None:
        if time.monotonic() < self._next_purge:
            return
        self._next_purge = time.monotonic() + PURGE_EVERY_SECONDS
        async with write_transaction(self.sessionmaker) as session:
            purged = await repository.purge_finished(session, utcnow() - self.settings.retention)
        if purged:
            log.info("purged %d webhook events past their retention", purged)


def _elapsed_ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


@contextlib.asynccontextmanager
async def delivering(
    sessionmaker: async_sessionmaker[AsyncSession], box: CredentialBox, settings: DeliverySettings
) -> AsyncIterator[Deliverer]:
    """A delivery worker running in the background while the block runs."""
    limits = httpx.Limits(max_connections=settings.concurrency * 2)
    async with http.client(
        timeout=settings.timeout, limits=limits, follow_redirects=False
    ) as client:
        deliverer = Deliverer(sessionmaker, box, client, settings)
        task = asyncio.create_task(deliverer.run())
        try:
            yield deliverer
        finally:
            deliverer.stop()
            await asyncio.gather(task, return_exceptions=True)
