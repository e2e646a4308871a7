"""The WebSocket protocol `outdial serve` runs its sockets with (uvicorn's `ws` option).

uvicorn's sans-I/O WebSocket protocol stops reading the socket after every message it
queues for the application and starts again once the application has taken the queue's
last one. On the standard event loop (the one `outdial serve` runs on SQLite) that is,
for a media stream whose carrier sends a message every 20 ms, two changes to the
selector's watch list (a system call each, and the selector's own bookkeeping) for every
message: a tenth of a busy media process's CPU (docs/benchmarks.md, "Media sessions").
`WebSocketProtocol` stops reading only once `ws_max_queue` messages (uvicorn's setting,
32 by default) wait for the application, and starts again, as uvicorn does, when they have
all been taken: a stream whose application falls behind is still held back, once that
many are waiting (one read of the socket may queue a few more). Under uvloop (on
PostgreSQL) stopping and starting is nearly free and uvicorn's own protocol is kept:
measured there, this one saved nothing.
"""

from __future__ import annotations

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

PATH = "outdial.websocket:WebSocketProtocol"  # what uvicorn's `ws` option names


def protocol(loop: str) -> str:
    """uvicorn's `ws` option for a server on this event loop (uvicorn's `loop` option)."""
    return PATH if loop == "asyncio" else "auto"


class WebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol, reading on until the queue is full."""

    def send_receive_event_to_app(self) -> None:
        paused = self.read_paused
        self.read_paused = True  # (so that uvicorn's method queues the message and no more)
        try:
            super().send_receive_event_to_app()
        finally:
            self.read_paused = paused
        # After the application's close nothing is queued, and the peer's close reply must
        # still be read (uvicorn started reading again for it).
        if not (paused or self.close_sent) and self.queue.qsize() >= self.config.ws_max_queue:
            self.read_paused = True
            self.transport.pause_reading()
