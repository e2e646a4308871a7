"""`outdial lists import` as a separate process on a throwaway SQLite database."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from tests.support import numbers

OUTDIAL = str(Path(sys.executable).with_name("outdial"))


class Cli:
    """Runs `outdial` with its data folder and database in a temporary directory."""

    def __init__(self, root: Path) -> None:
        self.database = root / "cli.db"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("OUTDIAL_")}
        self.env |= {
            "OUTDIAL_DATA_DIR": str(root / "data"),
            "OUTDIAL_DATABASE_URL": f"sqlite+aiosqlite:///{self.database}",
            "COLUMNS": "200",
        }

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [OUTDIAL, *args], env=self.env, capture_output=True, text=True, timeout=60
        )

    def ok(self, *args: str) -> str:
        result = self.run(*args)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def rows(self, list_id: str) -> list[tuple[int, str]]:
        with sqlite3.connect(self.database) as connection:
            return connection.execute(
                "SELECT position, phone_number FROM recipient_list_rows WHERE list_id = ? "
                "ORDER BY position",
                (list_id,),
            ).fetchall()


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Cli:
    return Cli(tmp_path_factory.mktemp("cli"))


@pytest.fixture(scope="module")
def user(cli: Cli) -> str:
    found = re.search(r"user_\w+", cli.ok("users", "create", "importer"))
    assert found
    return found.group(0)


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def report(output: str) -> tuple[str, int, int, int]:
    found = re.search(r"list (rl_\w+): (\d+) imported, (\d+) rejected, (\d+) rows in all", output)
    assert found, output
    list_id, imported, rejected, total = found.groups()
    return list_id, int(imported), int(rejected), int(total)


def test_import_creates_a_list_and_prints_the_report(cli: Cli, user: str, tmp_path: Path) -> None:
    a, b, c = numbers(3, start=100)
    rows = ["phone_number,name", f"{a},Ann", f"{b},Bo", "[/b]+1 555 000,Cy", c]  # markup is text
    path = write(tmp_path / "spring.csv", rows)
    output = cli.ok("lists", "import", str(path), "--user", user)
    list_id, imported, rejected, total = report(output)
    assert (imported, rejected, total) == (3, 1, 3)
    assert "row 4 phone_number: invalid number" in output
    assert "[/b]+1 555 000" in output
    assert cli.rows(list_id) == [(1, a), (2, b), (3, c)]


def test_import_into_a_list_appends_with_append_and_replaces_without(
    cli: Cli, user: str, tmp_path: Path
) -> None:
    first, more = numbers(2, start=200), numbers(2, start=202)
    created = cli.ok(
        "lists", "import", str(write(tmp_path / "a.csv", ["phone", *first])), "--user", user
    )
    list_id = report(created)[0]
    again = write(tmp_path / "b.csv", ["phone", *more, first[0]])
    output = cli.ok("lists", "import", str(again), "--user", user, "--list", list_id, "--append")
    assert report(output) == (list_id, 2, 1, 4)
    assert "already in the list" in output
    assert cli.rows(list_id) == list(enumerate([*first, *more], start=1))
    replacement = write(tmp_path / "c.csv", ["phone", *numbers(1, 210)])
    output = cli.ok("lists", "import", str(replacement), "--user", user, "--list", list_id)
    assert report(output) == (list_id, 1, 0, 1)
    assert cli.rows(list_id) == [(1, numbers(1, 210)[0])]


def test_refusals_exit_non_zero_and_write_nothing(cli: Cli, user: str, tmp_path: Path) -> None:
    good = write(tmp_path / "good.csv", ["phone", *numbers(1, 400)])
    unknown_user = cli.run("lists", "import", str(good), "--user", "user_nobody")
    assert unknown_user.returncode == 2
    assert "no user user_nobody" in unknown_user.stdout
    unknown_list = cli.run("lists", "import", str(good), "--user", user, "--list", "rl_nope")
    assert unknown_list.returncode == 2
    no_phone = cli.run(
        "lists", "import", str(write(tmp_path / "x.csv", ["name", "Ann"])), "--user", user
    )
    assert no_phone.returncode == 1
    assert "missing phone column" in no_phone.stdout
    with sqlite3.connect(cli.database) as connection:
        names = [row[0] for row in connection.execute("SELECT name FROM recipient_lists")]
    assert "x" not in names
