from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.conftest import POSTGRES_URL
from tests.dialing import Service, fresh_database, running_service


@pytest.fixture
async def service(backend: str, tmp_path: Path) -> AsyncIterator[Service]:
    """A real server with its dialer and simulator, on a database of its own."""
    async with (
        fresh_database(backend, tmp_path, POSTGRES_URL) as url,
        running_service(url, tmp_path / "data") as running,
    ):
        yield running
