"""What the benchmarks share: the machine they ran on, fresh databases, percentiles."""

from __future__ import annotations

import os
import platform
import secrets
import sqlite3
import statistics
import sys
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _ram_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024 / 1024
    return 0.0


def load() -> str:
    """The 1, 5 and 15-minute load averages: other work on the machine skews the figures."""
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def _dsn(url: str, database: str | None = None) -> str:
    parsed = make_url(url).set(drivername="postgresql")
    if database:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


async def postgres_version(url: str) -> str:
    connection = await asyncpg.connect(_dsn(url))
    try:
        version = await connection.fetchval("SHOW server_version")
        fsync = await connection.fetchval("SHOW fsync")
        commit = await connection.fetchval("SHOW synchronous_commit")
        buffers = await connection.fetchval("SHOW shared_buffers")
    finally:
        await connection.close()
    return f"{version} (fsync={fsync}, synchronous_commit={commit}, shared_buffers={buffers})"


async def describe(postgres_url: str | None) -> list[str]:
    """Lines naming CPU, cores, RAM, Python and database versions, and the current load."""
    lines = [
        f"cpu:        {_cpu_model()}",
        f"cores:      {os.cpu_count()}",
        f"ram:        {_ram_gib():.1f} GiB",
        f"python:     {sys.version.split()[0]} ({platform.python_implementation()})",
        f"sqlite:     {sqlite3.sqlite_version}",
    ]
    if postgres_url:
        lines.append(f"postgresql: {await postgres_version(postgres_url)}")
    lines.append(f"load:       {load()} (1/5/15 min)")
    return lines


async def create_database(backend: str, postgres_url: str | None, workdir: Path) -> str:
    """A fresh, empty database: a new SQLite file, or a new PostgreSQL database."""
    name = f"bench_{secrets.token_hex(4)}"
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{workdir / f'{name}.db'}"
    assert postgres_url, "PostgreSQL needs --postgres-url or OUTDIAL_TEST_POSTGRES_URL"
    connection = await asyncpg.connect(_dsn(postgres_url))
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return make_url(postgres_url).set(database=name).render_as_string(hide_password=False)


async def drop_database(backend: str, postgres_url: str | None, url: str) -> None:
    if backend == "sqlite":
        path = Path(url.split("///", 1)[1])
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    assert postgres_url
    connection = await asyncpg.connect(_dsn(postgres_url))
    try:
        name = make_url(url).database
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (`fraction` in 0..1) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, round(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def median(values: list[float]) -> float:
    return statistics.median(values)


def machine_cpu(before: Any, after: Any) -> tuple[float, float]:
    """CPU seconds the whole machine was busy between two `psutil.cpu_times()`, and those
    the hypervisor gave to others while this machine wanted them (steal)."""
    idle = ("idle", "iowait", "steal", "guest", "guest_nice")
    busy = sum(
        getattr(after, name) - getattr(before, name) for name in after._fields if name not in idle
    )
    steal = getattr(after, "steal", 0.0) - getattr(before, "steal", 0.0)
    return busy, steal
