"""The dialer's invariants under real processes on PostgreSQL: several workers, duplicated and
reordered callbacks, and a worker killed with SIGKILL in the middle of a campaign."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
import pytest

from outdial.campaign.state import COUNT_KEYS, RECIPIENT_FINAL
from tests.conftest import POSTGRES_URL, REQUIRE_POSTGRES
from tests.processes import Cluster, caller_setup
from tests.support import admin_url_database, create_database, drop_database, numbers

pytestmark = pytest.mark.skipif(
    not POSTGRES_URL and not REQUIRE_POSTGRES, reason="needs PostgreSQL (OUTDIAL_TEST_POSTGRES_URL)"
)

SCENARIO = {
    "human": 5,
    "machine": 2,
    "no_answer": 2,
    "busy": 1,
    "failed": 1,
    "ring_seconds": [0.02, 0.25],
    "talk_seconds": [0.02, 0.4],
    "duplicate_rate": 0.3,
    "reorder_rate": 0.3,
    "seed": 42,
}
LIVE = ("queued", "initiated", "ringing", "in_progress")


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    assert POSTGRES_URL, "OUTDIAL_TEST_POSTGRES_URL is not set"
    name = f"outdial_accept_{secrets.token_hex(4)}"
    await create_database(POSTGRES_URL, name)
    running = Cluster(admin_url_database(POSTGRES_URL, name), tmp_path)
    try:
        yield running
    finally:
        running.stop()
        await drop_database(POSTGRES_URL, name)


async def start_campaign(
    api: httpx.AsyncClient, count: int, calls_per_second: float = 500, **fields: Any
) -> str:
    assistant_id, number_id = await caller_setup(api, calls_per_second=calls_per_second)
    response = await api.post(
        "/campaign",
        json={
            "name": "acceptance",
            "assistant_id": assistant_id,
            "phone_number_id": number_id,
            "recipients": [{"phone_number": n} for n in numbers(count)],
            **fields,
        },
    )
    assert response.status_code == 200, response.text
    campaign_id = str(response.json()["id"])
    assert (await api.post(f"/campaign/{campaign_id}/start")).status_code == 200
    return campaign_id


class Sampler:
    """Live calls of one campaign, as the database and the carrier see them, every few ms."""

    def __init__(self, cluster: Cluster, campaign_id: str) -> None:
        self.cluster, self.campaign_id = cluster, campaign_id
        self.database_peak = self.samples = 0
        self.stopped = asyncio.Event()

    async def run(self) -> None:
        connection = await asyncpg.connect(self.cluster.dsn)
        try:
            while not self.stopped.is_set():
                live = await connection.fetchval(
                    "SELECT count(*) FROM calls WHERE campaign_id = $1 AND status = ANY($2)",
                    self.campaign_id,
                    list(LIVE),
                )
                self.database_peak = max(self.database_peak, int(live))
                self.samples += 1
                await asyncio.sleep(0.005)
        finally:
            await connection.close()


async def completed(api: httpx.AsyncClient, campaign_id: str, timeout: float) -> dict[str, Any]:
    for _ in range(int(timeout / 0.25)):
        campaign = (await api.get(f"/campaign/{campaign_id}")).json()
        if campaign["status"] == "completed":
            return dict(campaign)
        await asyncio.sleep(0.25)
    raise AssertionError(f"campaign did not complete: {campaign['counts']}")


async def check_ledger(cluster: Cluster, campaign: dict[str, Any], max_attempts: int) -> None:
    """Every recipient final, attempts within the policy, no person dialed more often than
    their attempts, counts equal to the rows, every slot released.

    `calls_placed` counts every dial that passed the gate. A worker killed after the gate and
    before its request reached the carrier leaves a dial the carrier never saw; the reaper ends
    it `lost` with its attempt spent (it may have rung), so it is placed for the counts and
    absent from the simulator's: exactly those make the difference."""
    connection = await asyncpg.connect(cluster.dsn)
    try:
        rows = await connection.fetch(
            "SELECT phone_number, status, attempts FROM campaign_recipients WHERE campaign_id = $1",
            campaign["id"],
        )
        live = await connection.fetchval(
            "SELECT count(*) FROM calls WHERE campaign_id = $1 AND status = ANY($2)",
            campaign["id"],
            list(LIVE),
        )
        placed = await connection.fetch(
            "SELECT to_number, count(*) AS calls, "
            "count(*) FILTER (WHERE ended_reason = 'lost' AND provider_call_sid IS NULL) "
            "AS unconfirmed "
            "FROM calls WHERE campaign_id = $1 AND status <> 'canceled' GROUP BY to_number",
            campaign["id"],
        )
    finally:
        await connection.close()
    async with httpx.AsyncClient(base_url=cluster.simulator) as sim:
        seen = (await sim.get("/_sim/stats")).json()
    never_seen = 0
    for row in placed:
        dialed = seen["dials_by_to"].get(row["to_number"], 0)
        assert 0 <= row["calls"] - dialed <= row["unconfirmed"], row
        never_seen += row["calls"] - dialed
    assert all(row["status"] in RECIPIENT_FINAL for row in rows)
    assert all(1 <= row["attempts"] <= max_attempts for row in rows)
    for row in rows:
        assert seen["dials_by_to"].get(row["phone_number"], 0) <= row["attempts"], row
    assert seen["overlaps"] == []
    by_status = {key: 0 for key in COUNT_KEYS}
    for row in rows:
        by_status[row["status"]] += 1
    counts = campaign["counts"]
    assert {
        k: counts[k] for k in by_status if k not in ("total", "calls_placed", "calls_active")
    } == {k: v for k, v in by_status.items() if k not in ("total", "calls_placed", "calls_active")}
    assert counts["total"] == len(rows)
    assert counts["calls_active"] == 0 and live == 0
    assert counts["calls_placed"] == seen["created"] + never_seen


@contextlib.asynccontextmanager
async def client(cluster: Cluster) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=cluster.api, headers=cluster.credentials(), timeout=30
    ) as api:
        yield api


async def test_three_workers_never_exceed_max_concurrency(cluster: Cluster) -> None:
    await cluster.start(SCENARIO, workers=3)
    async with client(cluster) as api:
        policy = {"max_attempts": 2, "retry_on": ["busy", "failed"], "delays_seconds": [60]}
        campaign_id = await start_campaign(api, 500, max_concurrency=7, retry_policy=policy)
        sampler = Sampler(cluster, campaign_id)
        sampling = asyncio.create_task(sampler.run())
        try:
            campaign = await completed(api, campaign_id, timeout=300)
        finally:
            sampler.stopped.set()
            await sampling
    async with httpx.AsyncClient(base_url=cluster.simulator) as sim:
        seen = (await sim.get("/_sim/stats")).json()
    assert sampler.samples > 100
    assert sampler.database_peak <= 7, cluster.logs()
    assert seen["peak_by_from"]["+14155550123"] <= 7
    assert seen["peak_by_from"]["+14155550123"] >= 5  # the workers did fill the slots
    await check_ledger(cluster, campaign, max_attempts=2)
    assert campaign["ended_reason"] == "all_recipients_done"
    await check_retry_spacing(cluster, campaign_id, seconds=60)


async def check_retry_spacing(cluster: Cluster, campaign_id: str, seconds: int) -> None:
    """Every second attempt left no earlier than the policy's delay after the first ended."""
    connection = await asyncpg.connect(cluster.dsn)
    try:
        gaps = await connection.fetch(
            "SELECT extract(epoch FROM second.dial_started_at - first.ended_at) AS gap "
            "FROM calls first JOIN calls second ON second.recipient_id = first.recipient_id "
            "AND second.attempt = first.attempt + 1 "
            "WHERE first.campaign_id = $1 AND second.dial_started_at IS NOT NULL",
            campaign_id,
        )
    finally:
        await connection.close()
    assert gaps, "the scenario produced no retries"
    assert min(float(row["gap"]) for row in gaps) >= seconds


async def test_a_worker_killed_mid_campaign_loses_nothing(cluster: Cluster) -> None:
    await cluster.start(SCENARIO, workers=2)
    async with client(cluster) as api, httpx.AsyncClient(base_url=cluster.simulator) as sim:
        campaign_id = await start_campaign(api, 200, max_concurrency=6)
        while (await sim.get("/_sim/stats")).json()["created"] < 60:
            await asyncio.sleep(0.02)
        cluster.kill("worker0")
        cluster.spawn("worker2", "worker")
        campaign = await completed(api, campaign_id, timeout=240)
    await check_ledger(cluster, campaign, max_attempts=1)


async def test_a_worker_stopped_mid_campaign_leaves_no_dial_claimed(cluster: Cluster) -> None:
    """SIGTERM (a deploy): the worker claims no more, gives back the dials it has not sent
    (those waiting for their paced moment or for a send again after the carrier's 429),
    lets the ones on their way finish, and exits cleanly. Nothing of it is left under a
    lease for the reaper; a new worker finishes the campaign, each person dialed once."""
    await cluster.start({**SCENARIO, "rate_limit_rate": 0.3}, workers=1)
    async with client(cluster) as api, httpx.AsyncClient(base_url=cluster.simulator) as sim:
        # Five dials a second: each claim takes dials whose paced moments are still ahead.
        campaign_id = await start_campaign(api, 80, calls_per_second=5, max_concurrency=30)
        while (await sim.get("/_sim/stats")).json()["created"] < 10:
            await asyncio.sleep(0.02)
        pid = cluster.processes["worker0"].pid
        connection = await asyncpg.connect(cluster.dsn)
        try:
            waiting = (
                "SELECT count(*) FROM calls WHERE status = 'queued' "
                "AND dial_started_at IS NULL AND lease_owner LIKE $1"
            )
            while not await connection.fetchval(waiting, f"%:{pid}:%"):
                await asyncio.sleep(0.01)  # (a dial claimed and waiting for its moment)
            assert cluster.terminate("worker0") == 0, cluster.logs()
            held = await connection.fetchval(
                "SELECT count(*) FROM calls WHERE lease_owner LIKE $1", f"%:{pid}:%"
            )
            given_back = await connection.fetchval(
                "SELECT count(*) FROM calls WHERE ended_reason = 'dialer_stopped'"
            )
        finally:
            await connection.close()
        assert held == 0
        assert given_back > 0
        cluster.spawn("worker1", "worker")
        campaign = await completed(api, campaign_id, timeout=240)
    await check_ledger(cluster, campaign, max_attempts=1)


async def test_an_api_served_by_two_processes_runs_a_campaign(cluster: Cluster) -> None:
    """`outdial serve --workers 2`, each process with its embedded dialer: the callbacks land
    on either process, the two dialers share the campaign, and the ledger is exact."""
    cluster.embedded_dialer, cluster.api_processes = True, 2
    await cluster.start(SCENARIO, workers=0)
    serving = psutil.Process(cluster.processes["api"].pid)
    processes = [p for p in serving.children(recursive=True) if "python" in p.name().lower()]
    assert len(processes) >= 2, cluster.logs()
    async with client(cluster) as api:
        campaign_id = await start_campaign(api, 120, max_concurrency=7)
        campaign = await completed(api, campaign_id, timeout=120)
    async with httpx.AsyncClient(base_url=cluster.simulator) as sim:
        seen = (await sim.get("/_sim/stats")).json()
    assert seen["peak_by_from"]["+14155550123"] <= 7
    await check_ledger(cluster, campaign, max_attempts=1)
    assert campaign["ended_reason"] == "all_recipients_done"


def _listeners(port: int) -> int:
    """Listening TCP sockets on `port` (the processes share one)."""
    listening = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(table) as lines:
            for line in list(lines)[1:]:
                local, state = line.split()[1], line.split()[3]
                listening += state == "0A" and int(local.rsplit(":", 1)[1], 16) == port
    return listening


async def test_server_processes_share_the_connections_evenly_and_one_that_dies_is_replaced(
    cluster: Cluster,
) -> None:
    """`outdial serve --workers 2`: one listening socket, each process accepting while it
    holds no more connections than the other, so 40 opened at once end up 20 / 20 (give or
    take one); a process killed is replaced and the port keeps answering."""
    cluster.api_processes = 2
    await cluster.start(SCENARIO, workers=0)
    assert _listeners(cluster.api_port) == 1, cluster.logs()
    serving = psutil.Process(cluster.processes["api"].pid)

    def servers() -> list[psutil.Process]:
        return [
            p
            for p in serving.children()
            if "python" in p.name().lower()
            and any(c.status == psutil.CONN_LISTEN for c in p.net_connections("tcp"))
        ]

    def connections() -> list[int]:
        return [
            sum(
                c.status == psutil.CONN_ESTABLISHED and c.laddr.port == cluster.api_port
                for c in p.net_connections("tcp")
            )
            for p in servers()
        ]

    # The first process up takes every connection until the second is accepting too.
    probes = []
    for _ in range(300):
        probes.append(await asyncio.open_connection("127.0.0.1", cluster.api_port))
        await asyncio.sleep(0.1)
        if len([held for held in connections() if held]) == 2:
            break
    assert len([held for held in connections() if held]) == 2, cluster.logs()
    for _reader, writer in probes:
        writer.close()
    for _ in range(100):
        if sum(connections()) == 0:
            break
        await asyncio.sleep(0.1)
    assert sum(connections()) == 0
    await asyncio.sleep(0.3)  # each process has said on its tick that it holds none again
    opened = [await asyncio.open_connection("127.0.0.1", cluster.api_port) for _ in range(40)]
    held = connections()
    for _ in range(100):  # (a busy machine's processes take a while to accept them all)
        if sum(held) == 40:
            break
        await asyncio.sleep(0.1)
        held = connections()
    for _reader, writer in opened:
        writer.close()
    assert len(held) == 2 and sum(held) == 40 and max(held) - min(held) <= 1, held
    victim = servers()[0]
    victim.kill()
    for _ in range(300):
        await asyncio.sleep(0.1)
        alive = servers()
        if len(alive) == 2 and victim.pid not in {p.pid for p in alive}:
            break
    assert len(servers()) == 2 and _listeners(cluster.api_port) == 1, cluster.logs()
    async with httpx.AsyncClient(base_url=cluster.api) as api:
        for _ in range(10):
            assert (await api.get("/health")).status_code == 200
    # a second outdial on the same port is refused instead of sharing it
    second = cluster.spawn("second", "serve", "--no-local-key", "--workers", "2")
    assert await asyncio.to_thread(second.wait, 60) != 0
    assert _listeners(cluster.api_port) == 1
