from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, model_validator

from outdial.recipient_list.schemas import RowProblem
from outdial.schemas import RequestModel, ResponseModel, Timestamp

MAX_REASON = 500
Source = Literal["api", "csv", "opt_out"]
RawNumber = Annotated[str, Field(min_length=1, max_length=40)]


class DoNotCallAdd(RequestModel):
    """One number (`phone_number`) or many (`phone_numbers`), with an optional reason."""

    phone_number: RawNumber | None = None
    phone_numbers: list[RawNumber] | None = Field(default=None, min_length=1, max_length=10_000)
    reason: str | None = Field(default=None, max_length=MAX_REASON)

    @model_validator(mode="after")
    def _one_of(self) -> DoNotCallAdd:
        if (self.phone_number is None) == (self.phone_numbers is None):
            raise ValueError("give either phone_number or phone_numbers")
        return self

    @property
    def numbers(self) -> list[str]:
        return [self.phone_number] if self.phone_number is not None else self.phone_numbers or []


class DoNotCallAdded(BaseModel):
    added: int = Field(description="Numbers that were not on the list before.")
    already_listed: int = Field(description="Numbers that were (their entry is unchanged).")
    phone_numbers: list[str] = Field(description="The numbers sent, in E.164, without repeats.")


class DoNotCallEntry(ResponseModel):
    phone_number: str
    reason: str | None
    source: Source
    call_id: str | None
    created_at: Timestamp


class DoNotCallImport(BaseModel):
    """What a CSV upload did: numbers added, numbers already listed, rows rejected."""

    imported: int
    already_listed: int
    rejected: int
    errors: list[RowProblem]
    errors_truncated: bool
