"""Benchmark: the campaign API at size, through a real uvicorn server over HTTP.

Per backend, on a fresh database:
1. POST /campaign with 10,000 inline recipients, several times (latency p50 / max);
2. a 1,000,000-row recipient list uploaded with POST /recipient-lists (one request);
3. a campaign on that list started with POST /campaign/{id}/start (the list snapshot);
4. GET /campaign/{id} with its counts, 200 times in a row (latency p50 / p95 / max);
5. GET /campaign/{id}/recipients at offset 999,950 (a deep page), 50 times.

The server runs with the dialer off, so nothing else touches the campaign while it is read.

    source scripts/postgres.sh && postgres_start      # fsync on; sets OUTDIAL_TEST_POSTGRES_URL
    .venv/bin/python -m bench.campaign_api             # --backends, --list-rows, --transport
    postgres_stop
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from cryptography.fernet import Fernet

from bench.common import (
    create_database,
    describe,
    drop_database,
    load,
    median,
    percentile,
)
from bench.data import phone_number, write_csv
from outdial.app import create_app
from outdial.auth import service as auth_service
from outdial.config import Settings
from outdial.database import create_engine, create_sessionmaker, migrate

TWILIO = {"provider": "twilio", "account_sid": "AC" + "0" * 32, "auth_token": "bench-token"}


def settings_for(url: str, data_dir: Path, port: int) -> Settings:
    return Settings(
        database_url=url,
        data_dir=data_dir,
        host="127.0.0.1",
        port=port,
        secret_key=Fernet.generate_key().decode(),
        dialer=False,
        log_level="WARNING",
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.asynccontextmanager
async def server(settings: Settings, transport: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for the app: a uvicorn process, or the app in this process (ASGI)."""
    timeout = httpx.Timeout(600)
    if transport == "asgi":
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            asgi = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=asgi, base_url="http://bench", timeout=timeout
            ) as client:
                yield client
        return
    command = [sys.executable, "-m", "bench.campaign_api", "--serve", settings.database_url or ""]
    env = {
        **os.environ,
        "OUTDIAL_DATA_DIR": str(settings.data_dir),
        "OUTDIAL_PORT": str(settings.port),
        "OUTDIAL_SECRET_KEY": settings.secret_key.get_secret_value() if settings.secret_key else "",
    }
    process = await asyncio.create_subprocess_exec(*command, env=env)
    base = f"http://127.0.0.1:{settings.port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=timeout) as client:
            for _ in range(300):
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get("/health")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
            yield client
    finally:
        process.terminate()
        await process.wait()


def serve(url: str) -> None:
    """The uvicorn child: one worker process, no dialer, warnings only."""
    settings = settings_for(
        url, Path(os.environ["OUTDIAL_DATA_DIR"]), int(os.environ["OUTDIAL_PORT"])
    )
    uvicorn.run(create_app(settings), host="127.0.0.1", port=settings.port, log_level="warning")


async def credentials(url: str) -> dict[str, str]:
    await migrate(url)
    engine = create_engine(url)
    async with create_sessionmaker(engine)() as session, session.begin():
        user = await auth_service.create_user(session, "bench")
        issued = await auth_service.create_key(session, user.id)
    await engine.dispose()
    return {"Authorization": f"Bearer {issued.key}", "X-User-ID": user.id}


async def timed(call: Callable[[], Awaitable[httpx.Response]]) -> tuple[float, Any]:
    started = time.perf_counter()
    response = await call()
    elapsed = time.perf_counter() - started
    assert response.status_code in (200, 204), (response.status_code, response.text[:500])
    return elapsed, response.json() if response.content else None


async def measure(client: httpx.AsyncClient, args: argparse.Namespace, csv: Path) -> dict[str, Any]:
    assistant = (await client.post("/assistants", json={"name": "Ava"})).json()
    number = (
        await client.post("/phone-numbers", json={"phone_number": "+14155550100", **TWILIO})
    ).json()
    base = {"assistant_id": assistant["id"], "phone_number_id": number["id"]}
    results: dict[str, Any] = {}

    creates = []
    for run in range(args.runs):
        first = run * args.inline
        recipients = [
            {"phone_number": phone_number(first + i), "metadata": {"name": f"Person {i}"}}
            for i in range(args.inline)
        ]
        body = {"name": f"inline {run}", **base, "recipients": recipients}
        seconds, campaign = await timed(lambda body=body: client.post("/campaign", json=body))
        assert campaign["counts"]["total"] == args.inline
        creates.append(seconds)
    results["create"] = creates

    with csv.open("rb") as file:
        files = {"file": (csv.name, file, "text/csv")}
        seconds, listing = await timed(
            lambda: client.post("/recipient-lists", data={"name": "big"}, files=files)
        )
    assert listing["row_count"] == args.list_rows, listing
    results["upload"] = seconds

    body = {"name": "big", **base, "recipient_list_id": listing["id"]}
    campaign = (await client.post("/campaign", json=body)).json()
    seconds, started = await timed(lambda: client.post(f"/campaign/{campaign['id']}/start"))
    assert started["counts"]["total"] == args.list_rows, started["counts"]
    results["start"] = seconds

    path = f"/campaign/{campaign['id']}"
    for _ in range(10):  # warm up connections and caches
        await client.get(path)
    results["get"] = [(await timed(lambda: client.get(path)))[0] for _ in range(args.gets)]
    deep = {"offset": args.list_rows - 50, "limit": 50}
    results["page"] = [
        (await timed(lambda: client.get(f"{path}/recipients", params=deep)))[0] for _ in range(50)
    ]
    return results


def report(backend: str, args: argparse.Namespace, results: dict[str, Any]) -> None:
    ms = 1000
    create, get, page = results["create"], results["get"], results["page"]
    print(f"\n{backend}")
    print(
        f"  POST /campaign, {args.inline:,} inline recipients, {args.runs} runs: "
        f"p50 {median(create):.2f} s, max {max(create):.2f} s"
    )
    print(
        f"  POST /recipient-lists, {args.list_rows:,}-row CSV (one upload): "
        f"{results['upload']:.1f} s ({args.list_rows / results['upload']:,.0f} rows/s)"
    )
    start = results["start"]
    print(f"  POST /campaign/{{id}}/start, snapshot of {args.list_rows:,} rows: {start:.1f} s")
    print(
        f"  GET /campaign/{{id}} with counts, {len(get)} requests: p50 {median(get) * ms:.1f} ms, "
        f"p95 {percentile(get, 0.95) * ms:.1f} ms, max {max(get) * ms:.1f} ms"
    )
    print(
        f"  GET /campaign/{{id}}/recipients?offset={args.list_rows - 50:,}, {len(page)} requests: "
        f"p50 {median(page) * ms:.1f} ms, p95 {percentile(page, 0.95) * ms:.1f} ms"
    )


async def main(args: argparse.Namespace) -> None:
    backends = args.backends.split(",")
    postgres_url = args.postgres_url if "postgresql" in backends else None
    print("\n".join(await describe(postgres_url)))
    how = "uvicorn (1 process) over HTTP" if args.transport == "uvicorn" else "httpx ASGITransport"
    print(f"server:     {how}, dialer off")
    with tempfile.TemporaryDirectory(prefix="outdial-bench-") as tmp:
        workdir = Path(tmp)
        csv = write_csv(workdir / "list.csv", args.list_rows)
        for backend in backends:
            print(f"load:       {load()} (before {backend})")
            url = await create_database(backend, postgres_url, workdir)
            try:
                headers = await credentials(url)
                settings = settings_for(url, workdir / f"data-{backend}", free_port())
                async with server(settings, args.transport) as client:
                    client.headers.update(headers)
                    results = await measure(client, args, csv)
            finally:
                await drop_database(backend, postgres_url, url)
            report(backend, args, results)
        print(f"\nload:       {load()} (after)")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--backends", default="postgresql,sqlite")
    parser.add_argument("--transport", choices=("uvicorn", "asgi"), default="uvicorn")
    parser.add_argument("--inline", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--list-rows", type=int, default=1_000_000)
    parser.add_argument("--gets", type=int, default=200)
    parser.add_argument("--postgres-url", default=os.environ.get("OUTDIAL_TEST_POSTGRES_URL"))
    parser.add_argument("--serve", metavar="DATABASE_URL", help=argparse.SUPPRESS)
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.serve:
        serve(arguments.serve)
    else:
        asyncio.run(main(arguments))
