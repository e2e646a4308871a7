"""A real HTTP server on a free local port that records what it receives and answers from a
script: the customer's webhook endpoint (or pre-dial URL) in tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Answer:
    """How the receiver answers one request: a status and body, late, or never."""

    status: int = 200
    body: bytes = b'{"received": true}'
    delay: float = 0.0
    hang: bool = False  # keep the connection open and never answer

    @classmethod
    def json(cls, value: Any, status: int = 200) -> Answer:
        return cls(status=status, body=json.dumps(value).encode())


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() when the body was in

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Answers the n-th request with `script[n]`, then with `then`."""

    script: list[Answer] = field(default_factory=list)
    then: Answer = field(default_factory=Answer)
    received: list[Received] = field(default_factory=list)
    url: str = ""
    _closing: asyncio.Event = field(default_factory=asyncio.Event)
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            method, path, _version = head[0].split(" ", 2)
            headers = {
                name.strip().lower(): value.strip()
                for name, value in (line.split(":", 1) for line in head[1:] if line)
            }
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            answer = (
                self.script[len(self.received)]
                if len(self.received) < len(self.script)
                else self.then
            )
            self.received.append(Received(method, path, headers, body, time.monotonic()))
            self._arrived.set()
            if answer.hang:
                await self._closing.wait()
                return
            if answer.delay:
                await asyncio.sleep(answer.delay)
            writer.write(
                f"HTTP/1.1 {answer.status} Scripted\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(answer.body)}\r\nConnection: close\r\n\r\n".encode()
                + answer.body
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    async def wait_for(self, count: int, timeout: float = 20.0) -> list[Received]:
        """Wait until `count` requests have arrived; all requests so far."""
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{len(self.received)} requests arrived, not {count}")
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), min(remaining, 0.1))
        return list(self.received)


@contextlib.asynccontextmanager
async def receiving(*script: Answer, then: Answer | None = None) -> AsyncIterator[Receiver]:
    receiver = Receiver(list(script), then or Answer())
    server = await asyncio.start_server(receiver._handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    receiver.url = f"http://127.0.0.1:{port}/hooks/outdial"
    try:
        yield receiver
    finally:
        receiver._closing.set()
        server.close()
        await server.wait_closed()


DOCS = Path(__file__).resolve().parents[1] / "docs" / "webhooks.md"


def documented_verify() -> Callable[..., bool]:
    """The `verify` function of docs/webhooks.md's verification recipe, run as written."""
    section = DOCS.read_text().split("## Verifying a delivery", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, Any] = {}
    exec(compile(code, str(DOCS), "exec"), namespace)
    return namespace["verify"]  # type: ignore[no-any-return]
