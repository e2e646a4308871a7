"""The WebSocket protocol `outdial serve` runs on the standard event loop
(`outdial/websocket.py`), over real loopback TCP with a real WebSocket client: the socket
stays read while the application is at most `ws_max_queue` messages behind, stops being
read beyond that, and is read again once the application has caught up, every message
delivered once and in order; and an application that closes while behind still hears the
peer's close reply."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import uvicorn
from uvicorn.server import ServerState
from websockets.asyncio.client import connect
from websockets.client import ClientProtocol
from websockets.protocol import State
from websockets.uri import parse_uri

from outdial import websocket

MAX_QUEUE = 8
ASGIReceive = Callable[[], Awaitable[dict[str, Any]]]
ASGISend = Callable[[dict[str, Any]], Awaitable[None]]


async def _until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(5):
        while not condition():
            await asyncio.sleep(0.005)


class SlowApp:
    """Accepts the socket, then waits for `go`: reads every message, or closes unread."""

    def __init__(self, *, close: bool = False) -> None:
        self.close = close
        self.go = asyncio.Event()
        self.received: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: ASGIReceive, send: ASGISend) -> None:
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        await self.go.wait()
        if self.close:
            await send({"type": "websocket.close", "code": 1000})
            return
        while (message := await receive())["type"] == "websocket.receive":
            self.received.append(message["text"])


@contextlib.asynccontextmanager
async def serving(app: SlowApp) -> AsyncIterator[tuple[int, list[websocket.WebSocketProtocol]]]:
    """A loopback server speaking `WebSocketProtocol` to `app`; yields its port and the
    protocols it made."""
    config = uvicorn.Config(app, ws=websocket.PATH, ws_max_queue=MAX_QUEUE, lifespan="off")
    config.load()
    assert config.ws_protocol_class is websocket.WebSocketProtocol
    state = ServerState()
    made: list[websocket.WebSocketProtocol] = []

    def protocol() -> websocket.WebSocketProtocol:
        made.append(websocket.WebSocketProtocol(config, state, app_state={}))
        return made[-1]

    server = await asyncio.get_running_loop().create_server(protocol, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], made
    finally:
        server.close()
        await server.wait_closed()


async def test_reads_on_until_the_application_is_max_queue_behind() -> None:
    app = SlowApp()
    async with serving(app) as (port, made), connect(f"ws://127.0.0.1:{port}/") as client:
        server_side = made[0]
        for number in range(MAX_QUEUE - 1):
            await client.send(f"m{number}")
        await _until(lambda: server_side.queue.qsize() == MAX_QUEUE - 1)
        assert server_side.transport.is_reading()  # (uvicorn's own stops after one)

        await client.send(f"m{MAX_QUEUE - 1}")
        await _until(lambda: server_side.queue.qsize() == MAX_QUEUE)
        assert not server_side.transport.is_reading()
        for number in range(MAX_QUEUE, 3 * MAX_QUEUE):
            await client.send(f"m{number}")
        await asyncio.sleep(0.05)
        assert server_side.queue.qsize() == MAX_QUEUE  # the rest wait in the socket

        app.go.set()
        await _until(lambda: len(app.received) == 3 * MAX_QUEUE)
        assert app.received == [f"m{number}" for number in range(3 * MAX_QUEUE)]
        assert server_side.transport.is_reading()


class Peer:
    """A WebSocket client driven step by step (websockets' sans-I/O protocol over a plain
    connection), so the test decides when it reads what the server sent."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.protocol = ClientProtocol(parse_uri("ws://127.0.0.1/"))

    @classmethod
    async def open(cls, port: int) -> Peer:
        peer = cls(*await asyncio.open_connection("127.0.0.1", port))
        peer.protocol.send_request(peer.protocol.connect())
        peer.flush()
        while peer.protocol.state is not State.OPEN:
            peer.protocol.receive_data(await peer.reader.read(65536))
        return peer

    def flush(self) -> None:
        self.writer.write(b"".join(self.protocol.data_to_send()))

    def send(self, text: str) -> None:
        self.protocol.send_text(text.encode())
        self.flush()

    async def read_close_and_reply(self) -> None:
        """Read until the server's close frame; websockets queues the reply, sent here."""
        while self.protocol.close_rcvd is None:
            self.protocol.receive_data(await self.reader.read(65536))
        self.flush()


async def test_an_application_that_closes_while_behind_hears_the_close_reply() -> None:
    """uvicorn reads again after the application's close, for the peer's reply. Media the
    peer sent before it saw the close must not stop that reading, or the socket stays open
    until uvicorn's 10 s close timer."""
    app = SlowApp(close=True)
    async with serving(app) as (port, made):
        peer = await Peer.open(port)
        server_side = made[0]
        for number in range(MAX_QUEUE):
            peer.send(f"m{number}")
        await _until(lambda: server_side.queue.qsize() == MAX_QUEUE)
        assert not server_side.transport.is_reading()

        app.go.set()  # closes with MAX_QUEUE messages unread
        await _until(lambda: server_side.close_sent)
        peer.send("sent before the close arrived")
        await asyncio.sleep(0.05)
        assert server_side.transport.is_reading()

        await peer.read_close_and_reply()
        await _until(server_side.transport.is_closing)
        peer.writer.close()
