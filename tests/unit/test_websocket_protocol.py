"""The WebSocket protocol `outdial serve` runs (`outdial/websocket.py`), over real loopback
TCP with a real WebSocket client: the socket stays read while the application is at most
`ws_max_queue` messages behind, stops being read beyond that, and is read again once the
application has caught up, every message delivered once and in order."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn
from uvicorn.server import ServerState
from websockets.asyncio.client import connect

from outdial import websocket

MAX_QUEUE = 8


async def _until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(5):
        while not condition():
            await asyncio.sleep(0.005)


class SlowApp:
    """Accepts the socket, then reads messages only once `reading` is set."""

    def __init__(self) -> None:
        self.reading = asyncio.Event()
        self.received: list[str] = []

    async def __call__(
        self,
        scope: dict[str, Any],
        receive: Callable[[], Awaitable[dict[str, Any]]],
        send: Callable[[dict[str, Any]], Awaitable[None]],
    ) -> None:
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        await self.reading.wait()
        while (message := await receive())["type"] == "websocket.receive":
            self.received.append(message["text"])


async def test_reads_on_until_the_application_is_max_queue_behind() -> None:
    app = SlowApp()
    config = uvicorn.Config(app, ws=websocket.PATH, ws_max_queue=MAX_QUEUE, lifespan="off")
    config.load()
    assert config.ws_protocol_class is websocket.WebSocketProtocol
    state = ServerState()
    made: list[websocket.WebSocketProtocol] = []

    def protocol() -> websocket.WebSocketProtocol:
        made.append(websocket.WebSocketProtocol(config, state, app_state={}))
        return made[0]

    loop = asyncio.get_running_loop()
    server = await loop.create_server(protocol, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with connect(f"ws://127.0.0.1:{port}/") as client:
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

            app.reading.set()
            await _until(lambda: len(app.received) == 3 * MAX_QUEUE)
            assert app.received == [f"m{number}" for number in range(3 * MAX_QUEUE)]
            assert server_side.transport.is_reading()
    finally:
        server.close()
        await server.wait_closed()
