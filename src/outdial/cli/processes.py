"""`outdial worker` and `outdial simulator`: the dialer (with the webhook deliverer) alone,
and the carrier simulator alone."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from pathlib import Path
from typing import Annotated

import httpx
import typer
import uvicorn
import uvloop

from outdial import http
from outdial.config import Settings
from outdial.database import create_engine, create_sessionmaker, migrate
from outdial.dialer.wakeup import Wakeup, listen
from outdial.dialer.worker import Dialer, dialer_settings
from outdial.pre_dial.service import PreDialChecker
from outdial.secrets_store import CredentialBox, load_or_create_key
from outdial.services import settle_startup_memory, simulator_url
from outdial.telephony.registry import Carriers
from outdial.telephony.simulator.app import create_simulator
from outdial.telephony.simulator.scenario import Scenario
from outdial.webhook.delivery import delivering, delivery_settings


async def run_worker(settings: Settings) -> None:
    """Claim and dial (and deliver lifecycle webhooks) until SIGINT/SIGTERM; the API and
    the telephony webhooks run elsewhere."""
    url = settings.resolved_database_url
    await migrate(url)
    engine = create_engine(url)
    secret = settings.secret_key.get_secret_value() if settings.secret_key else None
    box = CredentialBox(load_or_create_key(secret, settings.data_dir))
    limits = httpx.Limits(max_connections=500, max_keepalive_connections=200)
    sessionmaker = create_sessionmaker(engine)
    async with contextlib.AsyncExitStack() as stack:
        client = await stack.enter_async_context(http.client(timeout=15, limits=limits))
        carriers = Carriers(box, client, simulator_url(settings))
        pre_dial = PreDialChecker(sessionmaker, box, client)
        dialer = Dialer(sessionmaker, carriers, dialer_settings(settings), Wakeup(), pre_dial)
        if settings.webhooks:
            await stack.enter_async_context(
                delivering(sessionmaker, box, delivery_settings(settings))
            )
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, dialer.stop)
        settle_startup_memory()
        tasks = [asyncio.create_task(dialer.run())]
        if not settings.is_sqlite:
            tasks.append(asyncio.create_task(listen(url, dialer.wakeup, dialer.stopped)))
        await asyncio.gather(*tasks)
    await engine.dispose()


def worker_command() -> None:
    """Run a dialer worker (and a webhook deliverer) alone; several may share one PostgreSQL."""
    settings = Settings()
    run = asyncio.run if settings.is_sqlite else uvloop.run  # as `outdial serve` chooses
    run(run_worker(settings))


def simulator_command(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8900,
    scenario: Annotated[Path | None, typer.Option(help="Scenario JSON file.")] = None,
) -> None:
    """Run the carrier simulator alone (point OUTDIAL_SIMULATOR_URL at it)."""
    chosen = Scenario()
    if scenario is not None:
        chosen = Scenario.model_validate(json.loads(scenario.read_text()))
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.run(create_simulator(chosen), host=host, port=port, log_level="warning")
