"""`outdial serve`: the API (and, later, the embedded dialer) on one machine."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
import uvicorn
from rich.console import Console
from sqlalchemy import select

from outdial.app import create_app
from outdial.auth import service as auth_service
from outdial.cli.runtime import transaction
from outdial.config import Settings
from outdial.models import ApiKey, User, utcnow

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
) -> None:
    """Run the API on the configured database (default: SQLite in ./data)."""
    settings = Settings()
    settings = settings.model_copy(
        update={"host": host or settings.host, "port": port or settings.port}
    )
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
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        # Media streams are base64 μ-law, which compresses poorly: deflating each 20 ms frame
        # costs CPU on both ends for next to nothing.
        ws_per_message_deflate=False,
    )
