"""`outdial serve --workers N`: which configurations several processes can serve."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from outdial.cli.serve import several_processes_refused
from outdial.config import Settings

OUTDIAL = str(Path(sys.executable).with_name("outdial"))
POSTGRES = "postgresql+asyncpg://outdial@127.0.0.1:5432/outdial"


def test_several_processes_need_postgresql_and_a_standalone_simulator() -> None:
    sqlite = Settings(database_url="sqlite+aiosqlite:///x.db", telephony="live")
    assert "PostgreSQL" in (several_processes_refused(sqlite) or "")
    simulated = Settings(database_url=POSTGRES, telephony="simulated")
    assert "standalone simulator" in (several_processes_refused(simulated) or "")
    standalone = Settings(
        database_url=POSTGRES, telephony="simulated", simulator_url="http://127.0.0.1:9"
    )
    assert several_processes_refused(standalone) is None
    assert several_processes_refused(Settings(database_url=POSTGRES, telephony="live")) is None


def test_serve_refuses_several_processes_on_sqlite_before_starting(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OUTDIAL_")}
    env |= {"OUTDIAL_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "200"}
    done = subprocess.run(
        [OUTDIAL, "serve", "--workers", "2", "--no-local-key"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "--workers" in done.stderr and "SQLite serves one" in done.stderr
    assert not (tmp_path / "data").exists()  # nothing was created
