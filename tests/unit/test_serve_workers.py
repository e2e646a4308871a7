"""`outdial serve --workers N`: which configurations several processes can serve, the
supervisor's refusals, and the board that tells each process whether it is among the least
busy (the acceptance tests run it with real servers)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import uvicorn
from tests.dialing import free_port

from outdial.cli import supervisor
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


def _one_fails_as_it_starts(options: dict[str, Any], *_shared: Any) -> None:
    """The first process to get here fails at once; the others would serve a minute."""
    try:
        os.close(os.open(options["marker"], os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        time.sleep(60)
        return
    sys.exit(3)


def test_a_process_that_fails_as_it_starts_stops_the_others(tmp_path: Path) -> None:
    handler = signal.getsignal(signal.SIGTERM)
    options = {"host": "127.0.0.1", "port": free_port(), "marker": str(tmp_path / "first")}
    began = time.monotonic()
    assert supervisor.run(options, 3, target=_one_fails_as_it_starts) == 1
    assert time.monotonic() - began < 30  # the two others were stopped, not waited for
    assert signal.getsignal(signal.SIGTERM) == handler  # the caller's handlers are back


def test_a_port_something_listens_on_is_refused_before_any_process_starts(
    tmp_path: Path,
) -> None:
    taken = socket.socket()  # with SO_REUSEPORT, which another listener could share
    taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    taken.bind(("127.0.0.1", free_port()))
    taken.listen()
    options = {"host": "127.0.0.1", "port": taken.getsockname()[1], "marker": str(tmp_path / "m")}
    try:
        assert supervisor.run(options, 2, target=_one_fails_as_it_starts) == 1
    finally:
        taken.close()
    assert not (tmp_path / "m").exists()  # no process started


def test_a_process_is_ahead_while_one_heard_from_lately_holds_fewer_connections() -> None:
    board = supervisor.Board(3, multiprocessing.get_context("spawn"))
    assert not board.ahead(0, 0)  # nobody else has said anything yet
    assert board.ahead(1, 4)  # 0 holds none
    assert not board.ahead(0, 4) and not board.ahead(1, 4)  # a tie: neither is ahead
    assert not board.ahead(2, 3)
    assert board.ahead(0, 4) and board.ahead(1, 5)
    # a process not heard from for a second (dead, or stuck) is left out
    board.values[2 * 2 + 1] -= supervisor.STALE_SECONDS
    assert not board.ahead(0, 4) and board.ahead(1, 5)
    board.note(1, 4)
    assert not board.ahead(0, 4)
    # a process gone, stopping or unable to accept is forgotten at once, until it speaks
    assert board.ahead(0, 5)
    board.forget(1)
    assert not board.ahead(0, 5)
    assert board.ahead(1, 6)


async def _nothing(scope: Any, receive: Any, send: Any) -> None:
    """An ASGI app that never answers (the connection is what counts)."""


async def test_an_accept_error_of_one_connection_is_passed_over_and_a_lack_leaves_the_board(
    monkeypatch: Any,
) -> None:
    board = supervisor.Board(2, multiprocessing.get_context("spawn"))
    listener = supervisor.listening_socket("127.0.0.1", free_port())
    listener.setblocking(False)
    config = uvicorn.Config(_nothing, lifespan="off", log_level="warning")
    config.load()
    server = supervisor.BalancedServer(config, listener, board, 0)
    server.lifespan = config.lifespan_class(config)  # (what `serve` makes before `startup`)
    loop = asyncio.get_running_loop()
    failures = [OSError(errno.ECONNABORTED, "aborted"), OSError(errno.EMFILE, "no descriptors")]
    accept = loop.sock_accept  # (no stand-in runs a process out of descriptors on cue)

    async def failing(sock: socket.socket) -> Any:
        if failures:
            raise failures.pop(0)
        return await accept(sock)

    monkeypatch.setattr(loop, "sock_accept", failing)
    accepting = asyncio.create_task(server.accept())
    try:
        await asyncio.sleep(supervisor.ACCEPT_RETRY_SECONDS / 2)
        assert not failures and server.unable
        assert board.values[1] == 0.0  # left out while it cannot accept
        await asyncio.sleep(supervisor.ACCEPT_RETRY_SECONDS)
        assert not server.unable and board.values[1] > 0.0  # back once it tries again
        _reader, writer = await asyncio.open_connection(*listener.getsockname())
        for _ in range(50):
            if server.server_state.connections:
                break
            await asyncio.sleep(0.01)
        assert len(server.server_state.connections) == 1
        writer.close()
        await writer.wait_closed()
    finally:
        accepting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await accepting
        listener.close()


async def test_any_other_accept_error_ends_the_process_to_be_replaced(monkeypatch: Any) -> None:
    board = supervisor.Board(1, multiprocessing.get_context("spawn"))
    listener = supervisor.listening_socket("127.0.0.1", free_port())
    config = uvicorn.Config(_nothing, lifespan="off", log_level="critical")
    server = supervisor.BalancedServer(config, listener, board, 0)

    async def broken(sock: socket.socket) -> Any:
        raise OSError(errno.EBADF, "not a descriptor")

    monkeypatch.setattr(asyncio.get_running_loop(), "sock_accept", broken)
    accepting = asyncio.create_task(server.accept())
    accepting.add_done_callback(server.accepting_ended)
    try:
        with contextlib.suppress(OSError):
            await asyncio.wait_for(accepting, timeout=5)
        assert server.should_exit  # uvicorn's main loop ends; the supervisor starts another
    finally:
        listener.close()
