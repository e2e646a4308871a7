"""`outdial serve --workers N`: N server processes sharing one listening socket, each
accepting connections only while it holds no more than the least busy of them.

A media stream stays in the process that accepted it for the whole call, and a process's
calls share its event loop: the busiest process is the one whose replies are late first.
uvicorn's own supervisor hands every process the one socket it bound, and whichever process
accepts first takes the connection: the busier process, already awake, took more than its
share (47 and 14 streams of 60, docs/benchmarks.md). A socket per process bound with
`SO_REUSEPORT` spreads connections by a hash of their addresses, at random: 100 streams
over three processes came out 40 / 35 / 26 and the like. Here each process tells the
others, through memory they share (`Board`), how many connections it holds, and accepts
from the shared socket only while no other holds fewer (`BalancedServer`): a process that
took one more leaves the next connections to the others until they have caught up. A
process whose word is a second old (dead, or stuck) is left out.

The supervisor binds the socket (refusing a port something already listens on), starts
the processes, restarts one that dies (the connections queued on the shared socket wait
for the others), stops them all if one fails as it starts, and on SIGINT or SIGTERM;
stopping, it and every process close their copies of the socket, so that new connections
are refused rather than queued for nobody.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import multiprocessing
import signal
import socket
import time
from collections.abc import Callable
from multiprocessing.context import SpawnContext
from multiprocessing.process import BaseProcess
from typing import Any

import uvicorn

log = logging.getLogger("outdial.serve")

BACKLOG = 2048  # uvicorn's default
STARTUP_SECONDS = 10.0  # a process that fails sooner could not start: the others stop too
STOP_SECONDS = 30.0  # then stopping processes are killed
STALE_SECONDS = 1.0  # a process that has not said how busy it is for this long is left out
AHEAD_WAIT_SECONDS = 0.01  # a process ahead of the least busy waits this long, then looks again
ACCEPT_RETRY_SECONDS = 0.1  # after an accept failed for want of a resource (descriptors, memory)
# accept(2) errors that concern only the connection being accepted: try the next at once
CONNECTION_ERRNOS = frozenset(
    getattr(errno, name, -1)  # (ENONET is Linux's)
    for name in (
        *("ECONNABORTED", "EPROTO", "ENETDOWN", "ENETUNREACH", "EHOSTUNREACH"),
        *("EHOSTDOWN", "ENONET", "EOPNOTSUPP", "ETIMEDOUT", "EPERM"),
    )
)
# accept(2) errors for want of a resource: try again after ACCEPT_RETRY_SECONDS; any other
# error ends the accepting, and the process exits to be replaced (`accepting_ended`)
RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class Board:
    """How many connections each server process holds, and when it last said so, in memory
    the processes share (one slot each; `time.monotonic` is the machine's clock on Linux)."""

    def __init__(self, processes: int, context: SpawnContext) -> None:
        self.values = context.RawArray("d", 2 * processes)  # (connections, said at) per slot
        self.processes = processes

    def note(self, slot: int, connections: int) -> float:
        """Say that `slot` holds `connections`; the time it was said."""
        now = time.monotonic()
        self.values[2 * slot], self.values[2 * slot + 1] = connections, now
        return now

    def forget(self, slot: int) -> None:
        """Leave `slot` out until it says something again (its process is gone, stopping, or
        cannot accept)."""
        self.values[2 * slot + 1] = 0.0

    def ahead(self, slot: int, connections: int) -> bool:
        """Note `connections` for `slot`; whether a process heard from lately holds fewer."""
        now, values = self.note(slot, connections), self.values
        return any(
            values[2 * i] < connections and now - values[2 * i + 1] < STALE_SECONDS
            for i in range(self.processes)
        )


class BalancedServer(uvicorn.Server):
    """uvicorn's server, accepting connections on the shared socket one at a time, and only
    while no other process holds fewer (`Board`); while one does, it looks again every
    `AHEAD_WAIT_SECONDS`, and new connections go to the processes accepting. A connection is
    served by uvicorn's own protocol, as if uvicorn had accepted it. The least busy process
    always accepts, so no connection waits for a process to catch up; it may take one more
    while others' connections close (noted on uvicorn's tick, every 0.1 s)."""

    def __init__(self, config: uvicorn.Config, listener: socket.socket, board: Board, slot: int):
        super().__init__(config)
        self.listener, self.board, self.slot = listener, board, slot
        self.accepting: asyncio.Task[None] | None = None
        self.unable = False  # accepting failed for want of a resource: left out meanwhile

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=[])  # the app's startup; no listener of uvicorn's own
        self.listener.setblocking(False)
        self.accepting = asyncio.create_task(self.accept())
        self.accepting.add_done_callback(self.accepting_ended)

    async def on_tick(self, counter: int) -> bool:
        if not self.unable:
            self.board.note(self.slot, len(self.server_state.connections))
        return await super().on_tick(counter)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Stop accepting and leave the board, then uvicorn's shutdown. With every process's
        copy of the socket closed (the supervisor closes its own as it stops them), new
        connections are refused rather than queued for nobody."""
        self.board.forget(self.slot)
        if self.accepting is not None:
            self.accepting.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):  # (logged if it failed)
                await self.accepting
        self.listener.close()
        await super().shutdown(sockets)

    def accepting_ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("server process stops accepting", exc_info=task.exception())
            self.should_exit = True  # the supervisor starts another

    def protocol(self) -> asyncio.Protocol:
        """uvicorn's protocol for a new connection, as its `startup` makes it."""
        return self.config.http_protocol_class(  # type: ignore[call-arg]
            config=self.config, server_state=self.server_state, app_state=self.lifespan.state
        )

    async def accept(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if self.board.ahead(self.slot, len(self.server_state.connections)):
                await asyncio.sleep(AHEAD_WAIT_SECONDS)
                continue
            try:
                connection, _ = await loop.sock_accept(self.listener)
            except OSError as error:
                if error.errno in CONNECTION_ERRNOS:  # that connection only: the next
                    continue
                if error.errno not in RESOURCE_ERRNOS:
                    raise
                # Out of descriptors or memory: leave the connections to the others meanwhile.
                log.error("cannot accept a connection: %s", error)
                self.unable = True
                self.board.forget(self.slot)
                await asyncio.sleep(ACCEPT_RETRY_SECONDS)
                self.unable = False
                continue
            try:
                await loop.connect_accepted_socket(self.protocol, connection, ssl=self.config.ssl)
            except OSError:  # the peer had gone already
                connection.close()


def listening_socket(host: str, port: int) -> socket.socket:
    """The socket the processes share; bound without `SO_REUSEPORT`, so that it cannot be
    had while anything listens on the port, an outdial started before included."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


def serve_one(options: dict[str, Any], listener: socket.socket, board: Board, slot: int) -> None:
    """One server process (run in a fresh interpreter)."""
    config = uvicorn.Config("outdial.app:create_worker_app", factory=True, **options)
    BalancedServer(config, listener, board, slot).run()


def run(
    options: dict[str, Any],
    processes: int,
    target: Callable[[dict[str, Any], socket.socket, Board, int], None] = serve_one,
) -> int:
    """Serve with `processes` processes, each running `target(options, listener, board,
    slot)`, until SIGINT or SIGTERM or one fails as it starts; the exit status."""
    try:
        listener = listening_socket(options["host"], options["port"])
    except OSError as error:
        log.error("cannot listen on %s:%s: %s", options["host"], options["port"], error)
        return 1
    context = multiprocessing.get_context("spawn")
    board = Board(processes, context)
    stopping = False

    def stop(_signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}

    def start(slot: int) -> tuple[BaseProcess, float]:
        board.forget(slot)  # (a process that died in it may have said it was the least busy)
        process = context.Process(
            target=target, args=(options, listener, board, slot), name="outdial-serve"
        )
        process.start()
        log.info("started server process %s", process.pid)
        return process, time.monotonic()

    running = [start(slot) for slot in range(processes)]
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
            running[i] = start(i)
    listener.close()  # the processes close theirs as they stop: new connections are refused
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
