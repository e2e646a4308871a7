"""Benchmark: importing recipient CSVs of 100k, 250k and 1M rows on SQLite and PostgreSQL.

Each import runs in a fresh process through `recipient_list.service.create` inside one
transaction, as `POST /recipient-lists` does, so the process's peak RSS is the import's.
Besides wall time it reports CPU seconds of the importing process and of its PostgreSQL
backend, which other load on the machine disturbs less than wall time.

    source scripts/postgres.sh && postgres_start      # fsync on; sets OUTDIAL_TEST_POSTGRES_URL
    .venv/bin/python -m bench.import_csv               # --sizes, --backends, --style
    postgres_stop
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from bench.common import create_database, describe, drop_database, load
from bench.data import write_csv
from outdial.auth import service as auth_service
from outdial.database import create_engine, create_sessionmaker, migrate
from outdial.recipient_list import service


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _backend_cpu(session: AsyncSession) -> float | None:
    """CPU seconds the session's PostgreSQL backend has used (same machine only)."""
    if session.get_bind().dialect.name != "postgresql":
        return None
    pid = await session.scalar(text("SELECT pg_backend_pid()"))
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# What-if experiment (--drop-row-fk): the per-row foreign-key check is most of PostgreSQL's
# work in an import; this measures the import without it. Not what outdial ships.
DROP_ROW_FK = (
    "ALTER TABLE recipient_list_rows "
    "DROP CONSTRAINT IF EXISTS fk_recipient_list_rows_list_id_recipient_lists"
)


async def import_once(url: str, path: Path, drop_row_fk: bool) -> dict[str, Any]:
    """Migrate, create a user (untimed), then time one import and report its figures."""
    await migrate(url)
    engine = create_engine(url)
    sessions = create_sessionmaker(engine)
    async with sessions() as session, session.begin():
        if drop_row_fk:
            await session.execute(text(DROP_ROW_FK))
        user = await auth_service.create_user(session, "bench")
    rss_before = _peak_rss_mib()
    with path.open("rb") as file:
        async with sessions() as session:
            backend_before = await _backend_cpu(session)
            await session.commit()
            cpu_before, started = _cpu_seconds(), time.perf_counter()
            async with session.begin():
                recipient_list, report = await service.create(
                    session, user.id, path.stem, file, use_template=False, region="US"
                )
            seconds, cpu = time.perf_counter() - started, _cpu_seconds() - cpu_before
            backend_after = await _backend_cpu(session)
    await engine.dispose()
    assert report is not None
    backend = None if backend_before is None else backend_after - backend_before  # type: ignore[operator]
    return {
        "rows": recipient_list.row_count,
        "rejected": report.rejected,
        "seconds": seconds,
        "cpu": cpu,
        "backend_cpu": backend,
        "rss_before_mib": rss_before,
        "rss_peak_mib": _peak_rss_mib(),
    }


def run_child(url: str, path: Path, drop_row_fk: bool) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.import_csv", "--child", str(path), "--url", url]
    command += ["--drop-row-fk"] if drop_row_fk else []
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return dict(json.loads(output.strip().splitlines()[-1]))


def row(backend: str, megabytes: float, result: dict[str, Any]) -> str:
    backend_cpu = result["backend_cpu"]
    return (
        f"| {backend} | {result['rows']:,} | {megabytes:.1f} | {result['seconds']:.1f} "
        f"| {result['rows'] / result['seconds']:,.0f} | {result['cpu']:.1f} "
        f"| {'-' if backend_cpu is None else f'{backend_cpu:.1f}'} "
        f"| {result['rss_before_mib']:.0f} → {result['rss_peak_mib']:.0f} | {result['rejected']} |"
    )


async def main(args: argparse.Namespace) -> None:
    backends = args.backends.split(",")
    postgres_url = args.postgres_url if "postgresql" in backends else None
    print("\n".join(await describe(postgres_url)))
    print("path:       recipient_list.service.create, one transaction, fresh process per import")
    print(f"input:      phone_number,name,email; numbers written as {args.style}")
    if args.drop_row_fk:
        print("experiment: recipient_list_rows WITHOUT its foreign key (--drop-row-fk)")
    print()
    sizes = [int(size) for size in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="outdial-bench-") as tmp:
        workdir = Path(tmp)
        files = {size: workdir / f"recipients_{size}.csv" for size in sizes}
        for size, path in files.items():
            write_csv(path, size, args.style)
        print(
            "| backend | rows | MiB | wall s | rows/s | python CPU s | postgres CPU s "
            "| peak RSS MiB (start → peak) | rejected |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for backend in backends:
            for path in files.values():
                url = await create_database(backend, postgres_url, workdir)
                try:
                    result = await asyncio.to_thread(run_child, url, path, args.drop_row_fk)
                finally:
                    await drop_database(backend, postgres_url, url)
                print(row(backend, path.stat().st_size / 2**20, result), flush=True)
    print(f"\nload:       {load()} (1/5/15 min, after)")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sizes", default="100000,250000,1000000")
    parser.add_argument("--backends", default="postgresql,sqlite")
    parser.add_argument("--style", choices=("e164", "national"), default="e164")
    parser.add_argument("--postgres-url", default=os.environ.get("OUTDIAL_TEST_POSTGRES_URL"))
    parser.add_argument(
        "--drop-row-fk", action="store_true", help="what-if: drop recipient_list_rows' FK first"
    )
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.child:
        result = asyncio.run(import_once(arguments.url, arguments.child, arguments.drop_row_fk))
        print(json.dumps(result))
    else:
        asyncio.run(main(arguments))
