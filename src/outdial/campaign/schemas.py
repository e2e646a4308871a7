"""Campaign schemas: the seed's create body and response, plus outdial's extensions."""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from zoneinfo import available_timezones

from pydantic import (
    AliasChoices,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

from outdial.assistant.schemas import AssistantConfig, Emotions, OnOff, Responsiveness, Style
from outdial.schemas import RequestModel, ResponseModel, Timestamp

Outcome = Literal["no_answer", "busy", "failed", "voicemail"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
MetadataValue = StrictStr | StrictInt | StrictFloat | StrictBool | None
MAX_INLINE_RECIPIENTS = 100_000

_EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
_LATEST = datetime(2200, 1, 1, tzinfo=UTC)
_CLOCK = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]")
_RETRY_ON: tuple[Outcome, ...] = ("no_answer", "busy", "failed")
_EVERY_DAY: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _aware_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(
            "must be an ISO 8601 datetime with a UTC offset, e.g. 2026-12-01T09:00:00+05:30 "
            "or 2026-12-01T03:30:00Z"
        )
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range") from None
    if not _EARLIEST <= utc < _LATEST:
        raise ValueError("must be between the years 2000 and 2199")
    return utc


@functools.cache
def _zone_names() -> frozenset[str]:
    # `localtime` (the server's own zone) and `Factory` are files of the tz database, not
    # places: refused, like any name ZoneInfo could not load.
    return frozenset(available_timezones() - {"localtime", "Factory"})


def _zone(name: str) -> str:
    if name not in _zone_names():
        raise ValueError(f"{name!r} is not an IANA time zone (e.g. America/New_York)")
    return name


class RetryPolicy(RequestModel):
    """`{}` means a single attempt. Retry k waits delays_seconds[min(k-1, len-1)]."""

    max_attempts: int = Field(default=1, ge=1, le=10)
    retry_on: list[Outcome] = Field(default_factory=lambda: list(_RETRY_ON))
    delays_seconds: list[Annotated[int, Field(ge=60, le=604_800)]] = Field(
        default_factory=lambda: [1800], min_length=1, max_length=10
    )

    @field_validator("retry_on")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))


class CallingHours(RequestModel):
    """A daily window on the recipient's local clock (rules: outdial.campaign.hours).

    `start` 00:00..23:59, `end` 00:00..24:00 (24:00 is midnight at the end of the day), start
    after end is an overnight window belonging to the day it starts; start == end is refused.
    """

    start: str = Field(examples=["09:00"])
    end: str = Field(examples=["20:00"])
    days: list[Weekday] = Field(default_factory=lambda: list(_EVERY_DAY), min_length=1)
    timezone: str = Field(default="recipient", max_length=64)
    default_timezone: str = Field(default="UTC", max_length=64)

    @field_validator("start")
    @classmethod
    def _start(cls, value: str) -> str:
        if not _CLOCK.fullmatch(value):
            raise ValueError("must be a 24-hour time HH:MM from 00:00 to 23:59, e.g. 09:00")
        return value

    @field_validator("end")
    @classmethod
    def _end(cls, value: str) -> str:
        if not (_CLOCK.fullmatch(value) or value == "24:00"):
            raise ValueError("must be a 24-hour time HH:MM from 00:00 to 24:00, e.g. 20:00")
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        return value if value == "recipient" else _zone(value)

    @field_validator("default_timezone")
    @classmethod
    def _default_timezone(cls, value: str) -> str:
        return _zone(value)

    @field_validator("days")
    @classmethod
    def _unique_days(cls, value: list[str]) -> list[str]:
        repeated = sorted({day for day in value if value.count(day) > 1}, key=_EVERY_DAY.index)
        if repeated:
            raise ValueError(f"each day may appear once ({', '.join(repeated)} repeated)")
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> CallingHours:
        if self.start == self.end:
            raise ValueError("start and end must differ (an overnight window ends the next day)")
        return self


class SpeechSettingsOverride(RequestModel):
    """Campaign speech settings: each key given overrides the assistant's."""

    style: Style | None = None
    responsiveness: Responsiveness | None = None
    interruptions: OnOff | None = None
    emotions: Emotions | None = None


class RecipientInput(RequestModel):
    phone_number: str = Field(min_length=1, max_length=40)
    metadata: dict[str, MetadataValue] = Field(default_factory=dict, max_length=200)
    assistant_overrides: dict[str, Any] = Field(default_factory=dict)

    @field_validator("assistant_overrides")
    @classmethod
    def _known_fields(cls, value: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(value) - set(AssistantConfig.model_fields))
        if unknown:
            raise ValueError(f"unknown assistant fields: {', '.join(unknown)}")
        AssistantConfig.model_validate(value)
        return value


_START = AliasChoices("scheduleStartTime", "schedule_start_time")
_END = AliasChoices("scheduleEndTime", "schedule_end_time")


class _CampaignFields(RequestModel):
    """Fields shared by create and update, with their ranges."""

    schedule_start_time: datetime | None = Field(default=None, validation_alias=_START)
    schedule_end_time: datetime | None = Field(default=None, validation_alias=_END)
    retry_policy: RetryPolicy | None = None
    speech_settings: SpeechSettingsOverride | None = None
    campaign_context: str | None = None
    opening_message_template: str | None = Field(default=None, max_length=5000)
    returning_message_template: str | None = Field(default=None, max_length=5000)
    voicemail_message_template: str | None = Field(default=None, max_length=5000)
    short_term_summaries_limit: int | None = Field(default=None, ge=1, le=20)
    machine_detection_timeout_seconds: int | None = Field(default=None, ge=3, le=60)
    recipient_list_id: str | None = Field(default=None, max_length=64)
    recipients: list[RecipientInput] | None = Field(default=None, max_length=MAX_INLINE_RECIPIENTS)
    calling_hours: CallingHours | None = None

    @field_validator("schedule_start_time", "schedule_end_time")
    @classmethod
    def _with_offset(cls, value: datetime | None) -> datetime | None:
        return _aware_utc(value)


class CampaignCreate(_CampaignFields):
    name: str = Field(min_length=1, max_length=200)
    assistant_id: str = Field(max_length=64)
    phone_number_id: str = Field(max_length=64)
    channel: Literal["twilio", "vobiz"] = "twilio"
    max_concurrency: int = Field(default=5, ge=1, le=200)
    use_returning_greeting: bool = False
    use_short_term_summaries: bool = False


class CampaignUpdate(_CampaignFields):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    max_concurrency: int | None = Field(default=None, ge=1, le=200)
    use_returning_greeting: bool | None = None
    use_short_term_summaries: bool | None = None
    # Present only to answer "not editable" with a 409 rather than "unknown field".
    assistant_id: str | None = Field(default=None, max_length=64)
    phone_number_id: str | None = Field(default=None, max_length=64)
    channel: str | None = Field(default=None, max_length=20)


class RecipientsAppend(RequestModel):
    recipients: list[RecipientInput] = Field(min_length=1, max_length=MAX_INLINE_RECIPIENTS)


class StopRequest(RequestModel):
    hangup_active: bool = False


class Campaign(ResponseModel):
    id: str
    name: str
    assistant_id: str
    channel: str
    phone_number_id: str
    status: str
    max_concurrency: int
    retry_policy: dict[str, Any]
    speech_settings: dict[str, Any]
    assistant_name: str | None
    caller_id_number: str | None
    schedule_start_time: Timestamp | None
    schedule_end_time: Timestamp | None
    campaign_context: str | None
    opening_message_template: str | None
    use_returning_greeting: bool
    use_short_term_summaries: bool
    short_term_summaries_limit: int | None
    machine_detection_timeout_seconds: int | None
    recipient_list_id: str | None
    recipient_list_name: str | None
    recipient_list_row_count: int | None
    counts: dict[str, int]
    created_at: Timestamp | None
    updated_at: Timestamp | None
    ended_reason: str | None
    status_reason: str | None
    calling_hours: dict[str, Any] | None
    returning_message_template: str | None
    voicemail_message_template: str | None
    started_at: Timestamp | None
    completed_at: Timestamp | None
    warnings: list[str]


class CampaignRecipient(ResponseModel):
    id: str
    position: int
    phone_number: str
    metadata: dict[str, Any]
    assistant_overrides: dict[str, Any]
    status: str
    status_reason: str | None
    attempts: int
    last_outcome: str | None
    next_attempt_at: Timestamp | None
    last_call_id: str | None
