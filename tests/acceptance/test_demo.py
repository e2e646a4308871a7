"""The README's run command: a newcomer sees the URLs, a key, and a campaign dial to the end."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from tests.dialing import free_port
from tests.processes import OUTDIAL


def test_demo_prints_credentials_and_dials_to_completion(tmp_path: Path) -> None:
    env = {**os.environ, "OUTDIAL_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "120"}
    env.pop("OUTDIAL_DATABASE_URL", None)
    port = free_port()
    done = subprocess.run(
        [OUTDIAL, "demo", "--port", str(port), "--recipients", "6", "--no-keep-serving"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert f"http://127.0.0.1:{port}/docs" in out
    assert re.search(r"user id: user_\w+", out) and re.search(r"api key: sk_live_\S+", out)
    assert "Demo campaign: completed" in out
    assert re.search(r"total\s+│ 6", out) and re.search(r"calls placed\s+│ 6", out)
    assert (tmp_path / "data" / "outdial.db").exists()
