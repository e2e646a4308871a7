"""Domain errors carry their HTTP status; one handler renders them as `{"detail": …}`."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


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


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(OutdialError)
    async def _render(_request: Request, exc: OutdialError) -> JSONResponse:
        return JSONResponse(
            {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
        )
