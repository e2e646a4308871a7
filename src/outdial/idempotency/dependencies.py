"""The `Idempotency-Key` header of a create request, and the fingerprint of the request."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Header, Request
from starlette.datastructures import UploadFile

from outdial.auth.dependencies import UserId

MAX_KEY_LENGTH = 255
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
CHUNK = 1024 * 1024


@dataclass(frozen=True)
class IdempotentRequest:
    """A create request that carries a key: whose key, which request, how long it is kept."""

    user_id: str
    key: str
    fingerprint: str
    retention: timedelta


async def idempotent_request(
    request: Request,
    user_id: UserId,
    key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=MAX_KEY_LENGTH,
            pattern=r"^[ -~]+$",
            description="Any unique string (a UUID, say), at most 255 printable ASCII "
            "characters. Resending the same request with the same key returns the first "
            "response and creates nothing; keys are kept 24 hours (configurable).",
        ),
    ] = None,
) -> IdempotentRequest | None:
    if key is None:
        return None
    hours = request.app.state.settings.idempotency_key_hours
    return IdempotentRequest(user_id, key, await fingerprint(request), timedelta(hours=hours))


Idempotency = Annotated[IdempotentRequest | None, Depends(idempotent_request)]


async def fingerprint(request: Request) -> str:
    """SHA-256 of the method, the path and the body.

    A form is read field by field (name, then value or the file's bytes) rather than as
    bytes: its multipart boundary is random, so a client resending the same upload sends
    different bytes.
    """
    digest = hashlib.sha256()
    _feed(digest, request.method.encode())
    _feed(digest, request.url.path.encode())
    if request.headers.get("content-type", "").startswith(FORM_TYPES):
        for name, value in (await request.form()).multi_items():
            _feed(digest, name.encode("utf-8", "surrogatepass"))
            if isinstance(value, UploadFile):
                _feed(digest, await _file_digest(value))
            else:
                _feed(digest, value.encode("utf-8", "surrogatepass"))
    else:
        _feed(digest, await request.body())
    return digest.hexdigest()


def _feed(digest: hashlib._Hash, data: bytes) -> None:
    """Length first, so that no two different sequences of parts hash alike."""
    digest.update(len(data).to_bytes(8, "big"))
    digest.update(data)


async def _file_digest(upload: UploadFile) -> bytes:
    """The file's SHA-256, leaving it at its start for the endpoint to read."""
    digest = hashlib.sha256()
    while chunk := await upload.read(CHUNK):
        digest.update(chunk)
    await upload.seek(0)
    return digest.digest()
