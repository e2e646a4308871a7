"""Domain errors carry their HTTP status; one handler renders them as `{"detail": …}`."""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError

log = logging.getLogger("outdial")


class OutdialError(Exception):
    status_code = 400

    def __init__(self, detail: Any, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers


class Unauthorized(OutdialError):
    status_code = 401

    def __init__(self) -> None:
        super().__init__(
            "Invalid authentication credentials", headers={"WWW-Authenticate": "Bearer"}
        )


class NotFound(OutdialError):
    status_code = 404

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} not found")


class Conflict(OutdialError):
    status_code = 409


class PayloadTooLarge(OutdialError):
    status_code = 413


class RateLimited(OutdialError):
    """429 in upstream's words; the `X-RateLimit-*` headers are added by `RateLimitHeaders`."""

    status_code = 429

    def __init__(self, retry_after: int) -> None:
        super().__init__("Rate limit exceeded", headers={"Retry-After": str(retry_after)})


class Invalid(OutdialError):
    """422 in FastAPI's own shape: a list of {loc, msg, type}."""

    status_code = 422

    def __init__(self, loc: list[str | int], msg: str, *, kind: str = "value_error") -> None:
        super().__init__([{"loc": loc, "msg": msg, "type": kind}])

    @classmethod
    def many(cls, problems: list[dict[str, Any]]) -> Invalid:
        error = cls([], "")
        error.detail = problems
        return error


class ErrorResponse(JSONResponse):
    """JSON that always encodes: text a client sent (a lone surrogate in a key) may be echoed."""

    def render(self, content: Any) -> bytes:
        text = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        return text.encode("utf-8", "replace")


def validation_problems(exc: RequestValidationError) -> list[dict[str, Any]]:
    """FastAPI's 422 items minus `input` and `ctx`: a rejected value (a credential, say) is
    never sent back; where it was and what was wrong with it are."""
    return [
        {"loc": list(error["loc"]), "msg": error["msg"], "type": error["type"]}
        for error in exc.errors()
    ]


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(OutdialError)
    async def _render(_request: Request, exc: OutdialError) -> JSONResponse:
        return ErrorResponse(
            {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def _render_invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return ErrorResponse({"detail": validation_problems(exc)}, status_code=422)

    @app.exception_handler(DBAPIError)
    async def _render_lost_database(request: Request, exc: DBAPIError) -> JSONResponse:
        """A dropped database connection (a restart) is a 503 to retry; the pool reconnects.

        Connections are not pinged before use (a round trip on every request), so the first
        request after a database restart may be the one that finds its connection gone.
        """
        if not exc.connection_invalidated:
            raise exc
        log.warning("database connection lost during %s %s", request.method, request.url.path)
        return ErrorResponse(
            {"detail": "Database unavailable, retry shortly"},
            status_code=503,
            headers={"Retry-After": "1"},
        )


_ERROR_STATUSES = {
    "400": "The body could not be parsed (not JSON, not UTF-8, or a broken multipart form).",
    "401": "Missing or invalid credentials: `Authorization: Bearer <key>` and `X-User-ID`.",
    "404": "No such resource for this user; another user's ids are unknown ids.",
    "409": "The resource's current state does not allow this request.",
    "413": "The uploaded file is larger than the configured limit.",
    "429": "The API key used up its requests for this minute (see `X-RateLimit-Reset`).",
}
_RATE_LIMIT_HEADERS = {
    name: {"description": text, "required": True, "schema": {"type": "integer"}}
    for name, text in (
        ("X-RateLimit-Limit", "Requests per minute the API key's tier allows."),
        ("X-RateLimit-Remaining", "Requests left in the current minute."),
        ("X-RateLimit-Reset", "Unix time at which the current minute ends."),
        ("Retry-After", "Seconds until the current minute ends."),
    )
}
_ERROR_SCHEMA = {
    "title": "Error",
    "type": "object",
    "required": ["detail"],
    "properties": {"detail": {"anyOf": [{"type": "string"}, {"type": "array", "items": {}}]}},
}


def _error_statuses(method: str, operation: dict[str, Any]) -> list[str]:
    has_body = "requestBody" in operation
    has_path = any(p.get("in") == "path" for p in operation.get("parameters", []))
    content = operation.get("requestBody", {}).get("content", {})
    statuses = ["401"] if operation.get("security") else []
    if has_path or has_body:
        statuses.append("404")
    if statuses and method != "get":
        statuses.append("409")
    if has_body:
        statuses.append("400")
    if "multipart/form-data" in content:
        statuses.append("413")
    if operation.get("security"):
        statuses.append("429")
    return statuses


def document_errors(schema: dict[str, Any]) -> dict[str, Any]:
    """Add the `{"detail": …}` answers each operation can give to its OpenAPI responses."""
    schema.setdefault("components", {}).setdefault("schemas", {})["Error"] = _ERROR_SCHEMA
    reference = {"$ref": "#/components/schemas/Error"}
    for operations in schema.get("paths", {}).values():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            for status in _error_statuses(method, operation):
                answer: dict[str, Any] = {
                    "description": _ERROR_STATUSES[status],
                    "content": {"application/json": {"schema": reference}},
                }
                if status == "429":
                    answer["headers"] = _RATE_LIMIT_HEADERS
                responses.setdefault(status, answer)
    return schema
