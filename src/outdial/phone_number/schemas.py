"""Phone number schemas. Credentials go in, never out."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from outdial.schemas import RequestModel, ResponseModel, Timestamp

Provider = Literal["twilio", "vobiz"]

CREDENTIAL_FIELDS: dict[str, tuple[str, ...]] = {
    "twilio": ("account_sid", "auth_token"),
    "vobiz": ("auth_id", "auth_token"),
}


class PhoneNumberCreate(RequestModel):
    phone_number: str = Field(min_length=1, max_length=40, examples=["+16504601060"])
    provider: Provider = "twilio"
    account_sid: str | None = Field(default=None, max_length=64, description="Twilio Account SID")
    auth_token: str | None = Field(default=None, max_length=256)
    auth_id: str | None = Field(default=None, max_length=64, description="Vobiz Auth ID")
    label: str | None = Field(default=None, max_length=200)
    assistant_id: str | None = Field(default=None, max_length=64)
    calls_per_second: float | None = Field(
        default=None,
        gt=0,
        le=1000,
        description="Dial pacing for this number (Twilio's default account limit is 1).",
    )


class PhoneNumberUpdate(RequestModel):
    """Label and linked assistant; credentials may be rotated (the provider stays)."""

    label: str | None = Field(default=None, max_length=200)
    assistant_id: str | None = Field(default=None, max_length=64)
    calls_per_second: float | None = Field(
        default=None,
        gt=0,
        le=1000,
        description="Dial pacing for this number (Twilio's default account limit is 1).",
    )
    account_sid: str | None = Field(default=None, max_length=64)
    auth_token: str | None = Field(default=None, max_length=256)
    auth_id: str | None = Field(default=None, max_length=64)


class PhoneNumber(ResponseModel):
    id: str
    provider: str
    phone_number: str
    status: str
    label: str | None
    assistant_id: str | None
    calls_per_second: float
    created_at: Timestamp
    updated_at: Timestamp
