"""`outdial serve --workers N`: N server processes, each listening on the port through a
socket of its own.

uvicorn's own supervisor hands every process the one socket it bound, and whichever process
accepts first takes the connection: the busier process, already awake, takes more than its
share, and a media stream stays where it landed for the whole call (measured: 47 and 14
streams of 60, docs/benchmarks.md). With a socket per process bound with `SO_REUSEPORT`
the kernel spreads new connections evenly over the processes. The supervisor starts the
processes, restarts one that dies (its socket goes with it, so no connection is sent to a
process that is gone; one that fails as it starts stops them all), and on SIGINT or
SIGTERM stops them all.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import socket
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from typing import Any

import uvicorn

log = logging.getLogger("outdial.serve")

BACKLOG = 2048  # uvicorn's default
STARTUP_SECONDS = 10.0  # a process that fails sooner could not start: the others stop too
STOP_SECONDS = 30.0  # then stopping processes are killed


def listening_socket(host: str, port: int, *, shared: bool = True) -> socket.socket:
    """A listening socket of this process's own on the port; `shared`: with `SO_REUSEPORT`,
    which lets every process that sets it listen on the port too."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if shared:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


def serve_one(options: dict[str, Any]) -> None:
    """One server process (run in a fresh interpreter)."""
    sock = listening_socket(options["host"], options["port"])
    config = uvicorn.Config("outdial.app:create_worker_app", factory=True, **options)
    uvicorn.Server(config).run(sockets=[sock])


def run(
    options: dict[str, Any],
    processes: int,
    target: Callable[[dict[str, Any]], None] = serve_one,
) -> int:
    """Serve with `processes` processes, each running `target(options)`, until SIGINT or
    SIGTERM or one fails as it starts; the exit status."""
    # The port must be free: bound without SO_REUSEPORT, this fails if anything listens on
    # it, an outdial started before included (its processes would otherwise share it).
    try:
        listening_socket(options["host"], options["port"], shared=False).close()
    except OSError as error:
        log.error("cannot listen on %s:%s: %s", options["host"], options["port"], error)
        return 1
    context = multiprocessing.get_context("spawn")
    stopping = False

    def stop(_signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}

    def start() -> tuple[BaseProcess, float]:
        process = context.Process(target=target, args=(options,), name="outdial-serve")
        process.start()
        log.info("started server process %s", process.pid)
        return process, time.monotonic()

    running = [start() for _ in range(processes)]
    status = 0
    while not stopping:
        time.sleep(0.2)
        for i, (process, started) in enumerate(running):
            if process.is_alive() or stopping:
                continue
            failed = process.exitcode is not None and process.exitcode > 0  # not a signal
            if failed and time.monotonic() - started < STARTUP_SECONDS:
                log.error(
                    "server process %s could not start (exit %s)", process.pid, process.exitcode
                )
                status, stopping = 1, True
                break
            log.warning(
                "server process %s exited (%s): starting another", process.pid, process.exitcode
            )
            running[i] = start()
    for process, _ in running:
        if process.is_alive():
            process.terminate()
    deadline = time.monotonic() + STOP_SECONDS
    for process, _ in running:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join()
    for sig, handler in previous.items():
        signal.signal(sig, handler)
    return status
