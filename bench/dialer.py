"""Benchmark: the dialer against the carrier simulator (zero ring and talk time by default).

Real processes, as in production: a standalone simulator, the API (webhooks) and one or two
`outdial worker`s on PostgreSQL; or `outdial serve` with its embedded dialer on SQLite.
Reports sustained attempts per second, slot-refill latency (a call's end recorded → the
next dial passing the gate), database statements per attempt (PostgreSQL,
pg_stat_statements), CPU time per attempt and peak memory per process, and what the host
took from the machine meanwhile (steal, % of a core); a mode
`LAYOUT@N` sets max_concurrency N, and `--talk-seconds` a talk time (refill latency without
saturation). Then it holds 10,000 simultaneous live calls (50 campaigns x 200)
with one worker and reports memory per live call.

    POSTGRES_OPTIONS="-c shared_preload_libraries=pg_stat_statements -c max_connections=300" \\
        bash -c 'source scripts/postgres.sh && postgres_start && \\
                 .venv/bin/python -m bench.dialer; postgres_stop'
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
from tests.processes import Cluster, caller_setup
from tests.support import numbers

from bench.common import create_database, describe, drop_database, machine_cpu, percentile

ZERO = {
    "human": 1,
    "machine": 0,
    "no_answer": 0,
    "busy": 0,
    "failed": 0,
    "ring_seconds": [0, 0],
    "talk_seconds": [0, 0],
    "seed": 1,
}
HOLD = {**ZERO, "talk_seconds": [3600, 3600]}


def _dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


class Memory:
    """Peak RSS (MiB) of each process of the cluster, sampled every 100 ms; CPU time of
    each, of PostgreSQL's server processes and of this benchmark itself."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.peak: dict[str, float] = {}
        self.stopped = asyncio.Event()
        self._trees: dict[str, list[psutil.Process]] = {}
        self._found = 0.0

    def trees(self) -> dict[str, list[psutil.Process]]:
        """Each cluster process with its children, looked up again once a second (walking
        the process table every 100 ms cost the machine a tenth of a core)."""
        if time.monotonic() - self._found > 1.0:
            self._found = time.monotonic()
            self._trees = {}
            for name, process in self.cluster.processes.items():
                try:
                    root = psutil.Process(process.pid)
                    self._trees[name] = [root, *root.children(True)]
                except psutil.Error:
                    continue
        return self._trees

    def cpu(self) -> dict[str, float]:
        """CPU seconds (user + system) used so far by each process of the cluster, by
        PostgreSQL's server processes, by this benchmark, and by the whole machine."""
        self._found = 0.0
        used = {name: _cpu_seconds(tree) for name, tree in self.trees().items()}
        used["postgres"] = _cpu_seconds(
            [p for p in psutil.process_iter(["name"]) if p.info["name"] == "postgres"]
        )
        used["bench"] = _cpu_seconds([psutil.Process()])
        machine = psutil.cpu_times()
        used["machine"] = machine.user + machine.system
        return used

    def now(self) -> dict[str, float]:
        sizes = {}
        for name, tree in self.trees().items():
            try:
                sizes[name] = sum(p.memory_info().rss for p in tree) / 2**20
            except psutil.Error:
                self._found = 0.0
        return sizes

    async def run(self) -> None:
        while not self.stopped.is_set():
            for name, size in self.now().items():
                self.peak[name] = max(self.peak.get(name, 0.0), size)
            await asyncio.sleep(0.1)


def _cpu_seconds(processes: list[psutil.Process]) -> float:
    """User and system CPU seconds of the processes still alive (and of their reaped
    children: a process pool's finished workers count)."""
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total


async def _setup(api: httpx.AsyncClient) -> tuple[str, str]:
    return await caller_setup(api, calls_per_second=1000)


async def _campaign(
    api: httpx.AsyncClient, ids: tuple[str, str], count: int, start: int, concurrency: int
) -> str:
    response = await api.post(
        "/campaign",
        json={
            "name": "bench",
            "assistant_id": ids[0],
            "phone_number_id": ids[1],
            "max_concurrency": concurrency,
            "recipients": [{"phone_number": n} for n in numbers(count, start=start)],
        },
    )
    response.raise_for_status()
    return str(response.json()["id"])


async def _statements(url: str) -> int | None:
    connection = await asyncpg.connect(_dsn(url))
    try:
        return int(
            await connection.fetchval(
                "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements s JOIN pg_database d "
                "ON d.oid = s.dbid WHERE d.datname = current_database()"
            )
        )
    except asyncpg.PostgresError:
        return None
    finally:
        await connection.close()


async def _refill_latencies(url: str, campaign_id: str) -> list[float]:
    """For each call that ended while others waited: its end → the next dial request."""
    connection = await asyncpg.connect(_dsn(url)) if url.startswith("postgresql") else None
    if connection is None:
        return await _refill_latencies_sqlite(url, campaign_id)
    try:
        rows = await connection.fetch(
            "SELECT dial_started_at, ended_at FROM calls WHERE campaign_id = $1", campaign_id
        )
    finally:
        await connection.close()
    return _latencies([(r["dial_started_at"], r["ended_at"]) for r in rows])


async def _refill_latencies_sqlite(url: str, campaign_id: str) -> list[float]:
    import sqlite3
    from datetime import datetime

    with sqlite3.connect(url.split("///", 1)[1]) as connection:
        rows = connection.execute(
            "SELECT dial_started_at, ended_at FROM calls WHERE campaign_id = ?", (campaign_id,)
        ).fetchall()
    return _latencies([(datetime.fromisoformat(a), datetime.fromisoformat(b)) for a, b in rows])


def _latencies(rows: list[tuple[Any, Any]]) -> list[float]:
    starts = sorted(start for start, _end in rows if start is not None)
    last_start = starts[-1]
    result = []
    for _start, end in rows:
        if end is None or end >= last_start:
            continue
        following = next(s for s in starts if s >= end)
        result.append((following - end).total_seconds() * 1000)
    return result


async def throughput(
    mode: str,
    url: str,
    workdir: Path,
    count: int,
    concurrency: int,
    talk: float = 0.0,
    api_processes: int = 1,
) -> dict[str, Any]:
    layout, _, limit = mode.partition("@")  # "postgres:2@20": two workers, max_concurrency 20
    workers = int(layout.split(":")[1]) if ":" in layout else 0
    concurrency = int(limit) if limit else concurrency
    # SQLite has no workers: the dialer runs embedded in `outdial serve`.
    cluster = Cluster(
        url,
        workdir,
        embedded_dialer=workers == 0,
        api_processes=api_processes if workers else 1,  # several need PostgreSQL
    )
    await cluster.start({**ZERO, "talk_seconds": [talk, talk]}, workers=workers)
    memory = Memory(cluster)
    sampling = asyncio.create_task(memory.run())
    try:
        async with httpx.AsyncClient(
            base_url=cluster.api, headers=cluster.credentials(), timeout=60
        ) as api:
            ids = await _setup(api)
            campaign_id = await _campaign(api, ids, count, 0, concurrency)
            before = await _statements(url) if url.startswith("postgresql") else None
            cpu_before, times = memory.cpu(), psutil.cpu_times()
            started = time.perf_counter()
            await api.post(f"/campaign/{campaign_id}/start")
            # Polled five times a second, as a dashboard would: the figure is the dialer's.
            while (await api.get(f"/campaign/{campaign_id}")).json()["status"] != "completed":
                await asyncio.sleep(0.2)
            elapsed = time.perf_counter() - started
            cpu_after, stolen = memory.cpu(), machine_cpu(times, psutil.cpu_times())[1]
            after = await _statements(url) if before is not None else None
        latencies = await _refill_latencies(url, campaign_id)
    finally:
        memory.stopped.set()
        await sampling
        cluster.stop()
    return {
        "mode": mode if cluster.api_processes == 1 else f"{mode}, {cluster.api_processes} api",
        "concurrency": concurrency,
        "talk": talk,
        "attempts": count,
        "seconds": elapsed,
        "per_second": count / elapsed,
        "refill_p50": percentile(latencies, 0.5),
        "refill_p99": percentile(latencies, 0.99),
        "statements": (after - before) / count
        if before is not None and after is not None
        else None,
        "memory": memory.peak,
        "cpu_ms": {
            name: (cpu_after[name] - cpu_before.get(name, 0.0)) * 1000 / count for name in cpu_after
        },
        "steal": stolen / elapsed * 100,
    }


async def hold_live_calls(
    url: str, workdir: Path, campaigns: int, per_campaign: int
) -> dict[str, Any]:
    """One worker holds campaigns x per_campaign live calls; memory before and at the peak."""
    cluster = Cluster(url, workdir)
    await cluster.start(HOLD, workers=1)
    memory = Memory(cluster)
    try:
        async with (
            httpx.AsyncClient(
                base_url=cluster.api, headers=cluster.credentials(), timeout=120
            ) as api,
            httpx.AsyncClient(base_url=cluster.simulator) as sim,
        ):
            ids = await _setup(api)
            created = [
                await _campaign(api, ids, per_campaign, i * per_campaign, per_campaign)
                for i in range(campaigns)
            ]
            idle = memory.now()
            started = time.perf_counter()
            for campaign_id in created:
                await api.post(f"/campaign/{campaign_id}/start")
            target = campaigns * per_campaign
            while (await sim.get("/_sim/stats")).json()["live"] < target:
                await asyncio.sleep(0.5)
            ramp = time.perf_counter() - started
            await asyncio.sleep(2)
            held = memory.now()
    finally:
        cluster.stop()
    per_call = {name: (held[name] - idle.get(name, 0)) * 1024 / target for name in held}
    return {
        "live": target,
        "ramp_seconds": ramp,
        "idle": idle,
        "held": held,
        "per_call_kib": per_call,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--recipients", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument(
        "--talk-seconds",
        type=float,
        default=0.0,
        help="talk time of every call; above zero the dialer is not saturated, and refill "
        "latency is its reaction time rather than queueing",
    )
    parser.add_argument("--modes", default="postgres:1,postgres:2,sqlite")
    parser.add_argument(
        "--api-processes",
        type=int,
        default=1,
        help="`outdial serve --workers N` for the webhooks (PostgreSQL layouts only)",
    )
    parser.add_argument("--live-campaigns", type=int, default=50)
    parser.add_argument("--live-per-campaign", type=int, default=200)
    parser.add_argument("--postgres-url", default=os.environ.get("OUTDIAL_TEST_POSTGRES_URL"))
    args = parser.parse_args()
    print("\n".join(await describe(args.postgres_url)))
    with tempfile.TemporaryDirectory() as tmp:
        for mode in [m for m in args.modes.split(",") if m]:
            backend = "postgresql" if mode.startswith("postgres") else "sqlite"
            url = await create_database(backend, args.postgres_url, Path(tmp))
            if backend == "postgresql":
                await _enable_statements(url)
            try:
                result = await throughput(
                    mode,
                    url,
                    Path(tmp) / mode.replace(":", "-").replace("@", "-"),
                    args.recipients,
                    args.concurrency,
                    args.talk_seconds,
                    args.api_processes,
                )
            finally:
                await drop_database(backend, args.postgres_url, url)
            _print_throughput(result)
        if args.live_campaigns and args.postgres_url:
            url = await create_database("postgresql", args.postgres_url, Path(tmp))
            try:
                held = await hold_live_calls(
                    url, Path(tmp) / "live", args.live_campaigns, args.live_per_campaign
                )
            finally:
                await drop_database("postgresql", args.postgres_url, url)
            _print_live(held)


async def _enable_statements(url: str) -> None:
    connection = await asyncpg.connect(_dsn(url))
    try:
        await connection.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        await connection.execute("SELECT pg_stat_statements_reset()")
    except asyncpg.PostgresError as exc:
        print(f"(no statement counts: {exc})")
    finally:
        await connection.close()


def _print_throughput(r: dict[str, Any]) -> None:
    statements = f"{r['statements']:.1f}" if r["statements"] is not None else "n/a"
    memory = ", ".join(f"{name} {mib:.0f} MiB" for name, mib in sorted(r["memory"].items()))
    print(
        f"\n[{r['mode']}, max_concurrency {r['concurrency']}, talk {r['talk']:g} s] "
        f"{r['attempts']} attempts in "
        f"{r['seconds']:.1f} s = "
        f"{r['per_second']:.0f} attempts/s; refill p50 {r['refill_p50']:.1f} ms, "
        f"p99 {r['refill_p99']:.1f} ms; {statements} statements/attempt\n  peak RSS: {memory}"
    )
    cpu = ", ".join(f"{name} {ms:.1f}" for name, ms in sorted(r["cpu_ms"].items()))
    print(f"  CPU ms per attempt: {cpu}; the host took {r['steal']:.0f} % of a core")


def _print_live(r: dict[str, Any]) -> None:
    print(f"\n[live calls] {r['live']} live calls held (ramp {r['ramp_seconds']:.1f} s)")
    for name in sorted(r["held"]):
        print(
            f"  {name}: {r['idle'].get(name, 0):.0f} MiB idle → {r['held'][name]:.0f} MiB "
            f"held = {r['per_call_kib'][name]:.1f} KiB per live call"
        )


if __name__ == "__main__":
    asyncio.run(main())
