"""Benchmark: CPU per request of the HTTP clients outdial could send its requests with.

A real uvicorn process serves one no-op endpoint (a form POST shaped like a provider
callback, answered 204); this process sends the same POST through plain httpx and through
`outdial.http.client` (httpx over aiohttp), N at a time, and reports requests per second
and the CPU milliseconds each request cost the client and the server.

    .venv/bin/python -m bench.http_clients [--requests 4000] [--concurrency 1,10,50,200]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from collections.abc import Callable

import httpx
import psutil
from fastapi import FastAPI, Request, Response
from tests.dialing import free_port

from bench.common import describe
from outdial import http

app = FastAPI()  # the server: `uvicorn bench.http_clients:app`


@app.post("/telephony/{call}/{kind}")
async def callback(call: str, kind: str, request: Request) -> Response:
    await request.body()
    return Response(status_code=204)


FORM = {"CallSid": "CA" + "0" * 32, "CallStatus": "ringing", "AccountSid": "AC" + "0" * 32}


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


async def _run(
    make: Callable[[httpx.Limits], httpx.AsyncClient],
    base: str,
    server: psutil.Process,
    requests: int,
    concurrency: int,
) -> tuple[float, float, float]:
    me = psutil.Process()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with make(limits) as client:
        gate = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with gate:
                response = await client.post(f"{base}/telephony/c{i}/status", data=FORM)
                assert response.status_code == 204

        await asyncio.gather(*(one(i) for i in range(50)))  # warm the connections
        started, mine, theirs = time.perf_counter(), _cpu(me), _cpu(server)
        await asyncio.gather(*(one(i) for i in range(requests)))
        elapsed = time.perf_counter() - started
    return (
        requests / elapsed,
        (_cpu(me) - mine) * 1000 / requests,
        (_cpu(server) - theirs) * 1000 / requests,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--concurrency", default="1,10,50,200")
    args = parser.parse_args()
    print("\n".join(asyncio.run(describe(None))))
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "bench.http_clients:app", "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--log-level", "warning", "--no-access-log"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                httpx.get(base + "/docs", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        asyncio.run(_table(base, psutil.Process(process.pid), args.requests, args.concurrency))
    finally:
        process.terminate()
        process.wait()


async def _table(base: str, server: psutil.Process, requests: int, concurrency: str) -> None:
    clients: dict[str, Callable[[httpx.Limits], httpx.AsyncClient]] = {
        "httpx": lambda limits: httpx.AsyncClient(timeout=10, limits=limits),
        "httpx over aiohttp (outdial.http)": lambda limits: http.client(timeout=10, limits=limits),
    }
    print("\n| client | concurrent | requests/s | client CPU ms/request | server CPU ms/request |")
    print("|---|---:|---:|---:|---:|")
    for n in [int(c) for c in concurrency.split(",")]:
        for name, make in clients.items():
            rate, client_ms, server_ms = await _run(make, base, server, requests, n)
            print(f"| {name} | {n} | {rate:,.0f} | {client_ms:.2f} | {server_ms:.2f} |")


if __name__ == "__main__":
    main()
