"""Real outdial processes for acceptance tests: API, workers and simulator, on PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet

from tests.dialing import free_port

OUTDIAL = str(Path(sys.executable).parent / "outdial")


@dataclass
class Cluster:
    """One API process, N dialer workers and a standalone carrier simulator."""

    database_url: str
    workdir: Path
    api_port: int = field(default_factory=free_port)
    simulator_port: int = field(default_factory=free_port)
    secret_key: str = field(default_factory=lambda: Fernet.generate_key().decode())
    embedded_dialer: bool = False  # a dialer inside the API process (the SQLite layout)
    api_processes: int = 1  # `outdial serve --workers N`
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def dsn(self) -> str:
        """The database URL as asyncpg wants it."""
        return self.database_url.replace("postgresql+asyncpg://", "postgresql://")

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def simulator(self) -> str:
        return f"http://127.0.0.1:{self.simulator_port}"

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "OUTDIAL_DATABASE_URL": self.database_url,
            "OUTDIAL_DATA_DIR": str(self.workdir / "data"),
            "OUTDIAL_SECRET_KEY": self.secret_key,
            "OUTDIAL_PORT": str(self.api_port),
            "OUTDIAL_SIMULATOR_URL": self.simulator,
            "OUTDIAL_DIALER": "true" if self.embedded_dialer else "false",
            "OUTDIAL_DIALER_LEASE_SECONDS": "5",
            "OUTDIAL_DIALER_REAP_SECONDS": "1",
            **extra,
        }

    def spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        with (self.workdir / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(
                [OUTDIAL, *args],
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes[name] = process
        return process

    def run(self, *args: str) -> str:
        done = subprocess.run([OUTDIAL, *args], env=self.env(), capture_output=True, check=True)
        return done.stdout.decode()

    async def start(self, scenario: dict[str, Any], workers: int) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        path = self.workdir / "scenario.json"
        path.write_text(json.dumps(scenario))
        self.spawn(
            "simulator", "simulator", "--port", str(self.simulator_port), "--scenario", str(path)
        )
        self.run("migrate")
        self.spawn("api", "serve", "--no-local-key", "--workers", str(self.api_processes))
        for index in range(workers):
            self.spawn(f"worker{index}", "worker")
        await wait_until_up(f"{self.simulator}/_sim/stats")
        await wait_until_up(f"{self.api}/health")

    def credentials(self) -> dict[str, str]:
        user_id = self.run("users", "create", "acceptance").strip()
        issued = self.run("keys", "create", user_id)
        key = re.search(r"api key: (\S+)", issued)
        assert key is not None
        return {"Authorization": f"Bearer {key.group(1)}", "X-User-ID": user_id}

    def kill(self, name: str) -> None:
        process = self.processes.pop(name)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def terminate(self, name: str, timeout: float = 60) -> int:
        """SIGTERM one process and wait for it to exit: its exit code."""
        process = self.processes.pop(name)
        os.killpg(process.pid, signal.SIGTERM)
        return process.wait(timeout=timeout)

    def stop(self) -> None:
        for name in list(self.processes):
            process = self.processes.pop(name)
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()

    def logs(self) -> str:
        return "\n".join(
            f"== {p.name}\n{p.read_text()[-3000:]}" for p in self.workdir.glob("*.log")
        )


async def wait_until_up(url: str, timeout: float = 30) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(int(timeout / 0.1)):
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"{url} did not come up")


async def caller_setup(api: httpx.AsyncClient, calls_per_second: float) -> tuple[str, str]:
    """An assistant and a Twilio caller number paced at `calls_per_second`: their ids."""
    assistant = (await api.post("/assistants", json={"name": "Ava"})).json()
    number = await api.post(
        "/phone-numbers",
        json={
            "phone_number": "+14155550123",
            "provider": "twilio",
            "account_sid": "AC" + "1" * 32,
            "auth_token": "simulated-token",
            "calls_per_second": calls_per_second,
        },
    )
    number.raise_for_status()
    return assistant["id"], number.json()["id"]
