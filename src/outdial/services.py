"""What the service runs beside the API: carriers, the built-in simulator, the dialer, the
webhook delivery worker, and the purge of expired idempotency keys."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
from fastapi import FastAPI

from outdial import http
from outdial.config import Settings
from outdial.dialer.wakeup import Wakeup, listen
from outdial.dialer.worker import Dialer, dialer_settings
from outdial.idempotency import service as idempotency_service
from outdial.pre_dial.service import PreDialChecker
from outdial.telephony.registry import Carriers
from outdial.telephony.simulator.app import create_simulator
from outdial.telephony.webhooks import Verifier
from outdial.webhook.delivery import delivering, delivery_settings

SIMULATOR_PATH = "/_simulator"


# The collector's thresholds: a young pass every 10,000 allocations, each older generation
# after 20 passes of the one below (Python's defaults: 700, 10, 10).
GC_THRESHOLDS = (10_000, 20, 20)


def settle_startup_memory() -> None:
    """Keep what startup loaded out of the garbage collector's full passes (`gc.freeze`),
    and collect the young generation less often.

    A full pass walks every tracked object: with the libraries a process loads that took
    50-115 ms, a stall of the whole event loop each time; after the freeze the passes of a
    running dialer took 9-15 ms (docs/benchmarks.md). Modules, classes and settings live as
    long as the process, so there is nothing to collect among them. A call's pipeline
    allocates objects by the thousand a second (a frame, its metadata, its queue entries),
    nearly all freed by their reference counts: a young pass every 700 allocations found
    little; with `GC_THRESHOLDS` the media process used about a twentieth less CPU.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def mount_simulator(app: FastAPI, settings: Settings) -> FastAPI | None:
    """In simulated mode without a standalone simulator, serve one at /_simulator."""
    if settings.telephony != "simulated" or settings.simulator_url:
        return None
    simulator = create_simulator()
    app.mount(SIMULATOR_PATH, simulator)
    return simulator


def simulator_url(settings: Settings) -> str | None:
    if settings.telephony != "simulated":
        return None
    return settings.simulator_url or settings.resolved_public_base_url + SIMULATOR_PATH


@contextlib.asynccontextmanager
async def running(
    app: FastAPI, settings: Settings, simulator: FastAPI | None
) -> AsyncIterator[None]:
    """Start the HTTP client, the carriers, the in-process simulator, the dialer and the
    webhook delivery worker."""
    limits = httpx.Limits(max_connections=500, max_keepalive_connections=200)
    async with contextlib.AsyncExitStack() as stack:
        client = await stack.enter_async_context(http.client(timeout=15, limits=limits))
        if simulator is not None:
            await stack.enter_async_context(simulator.router.lifespan_context(simulator))
        app.state.http_client = client  # carriers, the pre-dial check, call action notices
        app.state.carriers = Carriers(app.state.credential_box, client, simulator_url(settings))
        app.state.verifier = Verifier(app.state.sessionmaker)
        app.state.pre_dial = PreDialChecker(
            app.state.sessionmaker, app.state.credential_box, client
        )
        app.state.dialer = None
        if settings.dialer:
            await stack.enter_async_context(run_dialer(app, settings))
        if settings.webhooks:
            await stack.enter_async_context(
                delivering(
                    app.state.sessionmaker, app.state.credential_box, delivery_settings(settings)
                )
            )
        retention = timedelta(hours=settings.idempotency_key_hours)
        await stack.enter_async_context(
            idempotency_service.purging(app.state.sessionmaker, retention)
        )
        settle_startup_memory()
        yield


@contextlib.asynccontextmanager
async def run_dialer(app: FastAPI, settings: Settings) -> AsyncIterator[Dialer]:
    dialer = Dialer(
        app.state.sessionmaker,
        app.state.carriers,
        dialer_settings(settings),
        Wakeup(),
        app.state.pre_dial,
    )
    app.state.dialer = dialer
    tasks = [asyncio.create_task(dialer.run())]
    if not settings.is_sqlite:
        tasks.append(
            asyncio.create_task(
                listen(settings.resolved_database_url, dialer.wakeup, dialer.stopped)
            )
        )
    try:
        yield dialer
    finally:
        dialer.stop()
        await asyncio.gather(*tasks, return_exceptions=True)
