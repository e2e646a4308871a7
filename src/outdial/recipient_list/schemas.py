from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from outdial.schemas import ResponseModel, Timestamp


class RowProblem(BaseModel):
    row: int
    column: str | None
    reason: str
    value: str | None = None


class ImportReport(BaseModel):
    """What an upload did: rows imported, rows rejected, and the first rejected rows."""

    imported: int
    rejected: int
    errors: list[RowProblem]
    errors_truncated: bool


class RecipientList(ResponseModel):
    id: str
    name: str | None
    row_count: int
    created_at: Timestamp
    updated_at: Timestamp
    last_import: ImportReport | None = None


class RecipientListRow(ResponseModel):
    id: str
    position: int
    phone_number: str
    metadata: dict[str, Any]
