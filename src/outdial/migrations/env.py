"""Alembic environment: runs migrations over the async engine on SQLite or PostgreSQL."""

import asyncio
from typing import Any, Literal

from alembic import context
from sqlalchemy.engine import Connection

from outdial.database import create_engine
from outdial.models import Base
from outdial.models.base import UTCDateTime

target_metadata = Base.metadata


def _render_item(kind: str, item: Any, autogen_context: Any) -> str | Literal[False]:
    """Migrations name plain SQLAlchemy types, so they never import application code."""
    if kind == "type" and isinstance(item, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        render_item=_render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_online() -> None:
    engine = create_engine(context.config.get_main_option("sqlalchemy.url") or "")
    async with engine.connect() as connection:
        await connection.run_sync(_run)
    await engine.dispose()


asyncio.run(_run_online())
