"""Refuse an oversized upload from its Content-Length, before a byte of it is read."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Receive, Scope, Send

FORM_OVERHEAD = 64 * 1024  # multipart boundaries and the other form fields


class UploadLimit:
    """Pure ASGI middleware: a multipart body announced larger than the limit gets a 413."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self._too_large(scope):
            body = json.dumps(
                {"detail": f"upload is larger than the limit of {self.max_bytes} bytes"}
            ).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 413,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        (b"connection", b"close"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)

    def _too_large(self, scope: Scope) -> bool:
        headers = dict(scope.get("headers") or [])
        if not headers.get(b"content-type", b"").startswith(b"multipart/"):
            return False
        try:
            announced = int(headers.get(b"content-length", b"0"))
        except ValueError:
            return False
        return announced > self.max_bytes + FORM_OVERHEAD
