"""`outdial serve`: the API, webhooks, media streams and the embedded dialer, in one process
or several."""

from __future__ import annotations

import asyncio
import os
from typing import Annotated, Any

import typer
import uvicorn
from rich.console import Console
from sqlalchemy import select

from outdial import websocket
from outdial.app import create_app
from outdial.auth import service as auth_service
from outdial.cli import supervisor
from outdial.cli.runtime import transaction
from outdial.config import Settings
from outdial.database import migrate
from outdial.models import ApiKey, User, utcnow
from outdial.secrets_store import load_or_create_key

LOCAL_USER = "local"
LOCAL_KEY_LABEL = "outdial serve (local)"


async def local_credentials(settings: Settings) -> auth_service.IssuedKey:
    """The `local` user and a fresh key for it; the previous serve key is revoked."""
    async with transaction(settings) as session:
        user = await session.scalar(select(User).where(User.name == LOCAL_USER))
        if user is None:
            user = await auth_service.create_user(session, LOCAL_USER)
        stale = await session.scalars(
            select(ApiKey).where(
                ApiKey.user_id == user.id,
                ApiKey.label == LOCAL_KEY_LABEL,
                ApiKey.revoked_at.is_(None),
            )
        )
        for key in stale:
            key.revoked_at = utcnow()
        return await auth_service.create_key(session, user.id, LOCAL_KEY_LABEL)


def serve_command(
    host: Annotated[str | None, typer.Option(help="Interface to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    local_key: Annotated[bool, typer.Option(help="Print a fresh key for the local user.")] = True,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="Processes serving the same port (PostgreSQL only; with simulated telephony, "
            "a standalone simulator at OUTDIAL_SIMULATOR_URL).",
        ),
    ] = 1,
) -> None:
    """Run the API on the configured database (default: SQLite in ./data)."""
    settings = Settings()
    settings = settings.model_copy(
        update={"host": host or settings.host, "port": port or settings.port}
    )
    if workers > 1:
        refused = several_processes_refused(settings)
        if refused:
            raise typer.BadParameter(refused, param_hint="--workers")
    console = Console()
    base = f"http://{settings.host}:{settings.port}"
    console.print(f"outdial on [bold]{base}[/bold]  (API docs: {base}/docs)")
    console.print(f"database: {settings.resolved_database_url}")
    if local_key:
        issued = asyncio.run(local_credentials(settings))
        print(f"user id: {issued.user_id}\napi key: {issued.key}")
        print(
            f'try: curl -H "Authorization: Bearer {issued.key}" '
            f'-H "X-User-ID: {issued.user_id}" {base}/campaign'
        )
    # uvloop on PostgreSQL; on SQLite every statement is handed to aiosqlite's thread
    # and back, which the standard loop does faster (docs/decisions.md, "HTTP underneath").
    loop = "asyncio" if settings.is_sqlite else "uvloop"
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level.lower(),
        # Media streams are base64 μ-law, which compresses poorly: deflating each 20 ms frame
        # costs CPU on both ends for next to nothing.
        "ws_per_message_deflate": False,
        "loop": loop,
        "ws": websocket.protocol(loop),  # on the standard loop, no pause after each message
    }
    if workers == 1:
        uvicorn.run(create_app(settings), **options)
        return
    # Each process builds its app from the environment; what must happen once happens here.
    asyncio.run(migrate(settings.resolved_database_url))
    secret = settings.secret_key.get_secret_value() if settings.secret_key else None
    load_or_create_key(secret, settings.data_dir)
    os.environ.update({"OUTDIAL_HOST": settings.host, "OUTDIAL_PORT": str(settings.port)})
    # One socket, each process accepting while it is among the least busy (cli/supervisor.py).
    raise typer.Exit(supervisor.run(options, workers))


def several_processes_refused(settings: Settings) -> str | None:
    """Why this configuration cannot be served by several processes (None: it can)."""
    if settings.is_sqlite:
        return "several processes need PostgreSQL (OUTDIAL_DATABASE_URL); SQLite serves one"
    if settings.telephony == "simulated" and not settings.simulator_url:
        return (
            "with simulated telephony, several processes need a standalone simulator "
            "(`outdial simulator`, OUTDIAL_SIMULATOR_URL): each process would run its own"
        )
    return None
