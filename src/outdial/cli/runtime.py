"""What CLI commands share: settings, a migrated database, and one transaction."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncSession

from outdial.config import Settings
from outdial.database import create_engine, create_sessionmaker, migrate, write_transaction


@asynccontextmanager
async def transaction(settings: Settings) -> AsyncIterator[AsyncSession]:
    """A session on a migrated database; commits when the block ends without error."""
    url = settings.resolved_database_url
    await migrate(url)
    engine = create_engine(url, pool_size=1)
    try:
        async with write_transaction(create_sessionmaker(engine)) as session:
            yield session
    finally:
        await engine.dispose()
