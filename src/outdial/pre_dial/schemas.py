from __future__ import annotations

from pydantic import Field, field_validator

from outdial.schemas import RequestModel, ResponseModel, Timestamp
from outdial.webhook.schemas import URL_EXAMPLE, check_url


class PreDialCheckSet(RequestModel):
    url: str = Field(min_length=1, max_length=2000, examples=[URL_EXAMPLE])
    timeout_seconds: float = Field(
        default=3, ge=0.5, le=10, description="No answer in this time: the dial is skipped."
    )
    rotate_secret: bool = Field(
        default=False, description="Issue a new signing secret (shown in the response)."
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_url(value)


class PreDialCheck(ResponseModel):
    url: str
    timeout_seconds: float
    created_at: Timestamp
    updated_at: Timestamp
    secret: str | None = Field(
        default=None,
        description="The signing secret, only when it was just created or rotated.",
    )
