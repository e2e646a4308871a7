"""Schema pieces every feature shares: request/response bases, timestamps, paging."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Query, Response
from pydantic import BaseModel, ConfigDict, PlainSerializer, field_validator

MAX_TEXT = 20_000


def format_timestamp(value: datetime) -> str:
    """ISO 8601 in UTC with a `Z` and always six decimals, e.g. `2026-11-26T15:12:07.123456Z`
    (a whole second too: every timestamp has one width, so they sort as strings)."""
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


Timestamp = Annotated[datetime, PlainSerializer(format_timestamp, return_type=str)]


def check_storable(value: Any, path: str = "") -> Any:
    """Refuse what no database can store: NUL characters, lone surrogates, non-finite floats."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError(f"{path or 'text'} must not contain NUL characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"{path or 'text'} is not valid Unicode text") from None
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{path or 'number'} must be a finite number")
    elif isinstance(value, dict):
        for key, item in value.items():
            check_storable(key, path)
            check_storable(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_storable(item, f"{path}[{index}]")
    return value


class RequestModel(BaseModel):
    """Base of every request body: unknown fields are refused, text must be storable."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, str_max_length=MAX_TEXT)

    @field_validator("*", mode="after")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        if isinstance(value, BaseModel):
            return value
        return check_storable(value)


class ResponseModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Page(BaseModel):
    limit: int
    offset: int


def page_params(
    limit: Annotated[int, Query(ge=1, le=500, description="Rows per page (max 500).")] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> Page:
    return Page(limit=limit, offset=offset)


def set_total(response: Response, total: int) -> None:
    response.headers["X-Total-Count"] = str(total)
