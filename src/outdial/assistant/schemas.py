"""Assistant schemas: the upstream assistant object with its defaults and ranges."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from outdial.schemas import RequestModel, ResponseModel, Timestamp
from outdial.webhook.schemas import check_url

Style = Literal["neutral", "professional", "friendly"]
Responsiveness = Literal["relaxed", "balanced", "instant"]
OnOff = Literal["on", "off"]
Emotions = Literal["natural", "off"]

TtsProvider = Literal["cartesia", "deepgram", "openai", "google", "fake"]
LlmProvider = Literal["openai", "google", "fake"]
SttProvider = Literal["deepgram", "openai", "google", "fake"]

DEFAULT_SUMMARY_PROMPT = (
    "Summarise this call in two or three sentences: what the person said, what was agreed, "
    "and any follow-up."
)
DEFAULT_MEMORY_PROMPT = "Relevant, user-specific context from previous conversations:\n\n"
# Validation context for a configuration already stored: it is read as it was accepted.
STORED = {"stored": True}


class SpeechSettings(RequestModel):
    style: Style = "neutral"
    responsiveness: Responsiveness = "balanced"
    interruptions: OnOff = "on"
    emotions: Emotions = "natural"


class Voice(RequestModel):
    voice_id: str = ""
    tts_provider: TtsProvider = "cartesia"
    tts_model: str = Field(default="sonic-3", max_length=100)
    language: str = Field(default="en", max_length=20)
    speed: float = Field(default=1.0, ge=0.6, le=1.5)


class Llm(RequestModel):
    llm_provider: LlmProvider = "openai"
    model: str = Field(default="gpt-4o-mini", max_length=100)


class Transcriber(RequestModel):
    stt_provider: SttProvider = "deepgram"
    stt_model: str = Field(default="nova-3", max_length=100)
    language: str = Field(default="en", max_length=20)


class LongTermMemory(RequestModel):
    enabled: bool = False
    search_limit: int = Field(default=5, ge=1, le=50)
    search_threshold: float = Field(default=0.1, ge=0, le=1)
    system_prompt: str = DEFAULT_MEMORY_PROMPT


class ShortTermMemory(RequestModel):
    enabled: bool = False
    search_limit: int = Field(default=3, ge=1, le=20)


class CallSummary(RequestModel):
    prompt: str = DEFAULT_SUMMARY_PROMPT


class Recording(RequestModel):
    enabled: bool = False
    stereo: bool = True
    mp3_enabled: bool = True


class CallActions(RequestModel):
    enabled: bool = True
    allow_hangup: bool = True
    allow_transfer: bool = True
    hangup_triggers: list[str] = Field(default_factory=list, max_length=100)
    transfer_triggers: list[str] = Field(default_factory=list, max_length=100)
    transfer_number: str | None = Field(default=None, max_length=40)
    transfer_mode: Literal["warm", "cold"] = "cold"
    confirm_required: bool = True
    auto_hangup_silence_seconds: int | None = Field(default=None, ge=5, le=3600)
    confirm_yes: list[str] = Field(default_factory=list, max_length=100)
    confirm_no: list[str] = Field(default_factory=list, max_length=100)
    webhook_url: str | None = Field(default=None, max_length=2000)
    webhook_timeout_ms: int = Field(default=3500, ge=100, le=30_000)

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        """An http(s) URL, checked when it is given; one stored before this check existed
        still resolves (its notices fail and are logged, the call goes on)."""
        if value is None or (info.context or {}).get("stored"):
            return value
        return check_url(value)


class AssistantConfig(RequestModel):
    """Everything an assistant is, but its name; also the shape of `assistant_overrides`."""

    description: str | None = None
    system_instruction: str = ""
    first_message: str = ""
    icon: str | None = Field(default=None, max_length=2000)
    guardrails: str | None = None
    voice: Voice = Field(default_factory=Voice)
    llm: Llm = Field(default_factory=Llm)
    transcriber: Transcriber = Field(default_factory=Transcriber)
    speech_settings: SpeechSettings = Field(default_factory=SpeechSettings)
    long_term_memory: LongTermMemory = Field(default_factory=LongTermMemory)
    short_term_memory: ShortTermMemory = Field(default_factory=ShortTermMemory)
    call_summary: CallSummary = Field(default_factory=CallSummary)
    recording: Recording = Field(default_factory=Recording)
    call_actions: CallActions = Field(default_factory=CallActions)
    knowledge_base_ids: list[str] = Field(default_factory=list, max_length=100)
    phone_number_id: str | None = Field(default=None, max_length=64)
    assistant_speaks_first: bool = True
    machine_detection_timeout_seconds: int | None = Field(default=None, ge=3, le=60)


NESTED_FIELDS = frozenset(
    name
    for name, field in AssistantConfig.model_fields.items()
    if isinstance(field.annotation, type) and issubclass(field.annotation, RequestModel)
)


class AssistantCreate(AssistantConfig):
    name: str = Field(min_length=1, max_length=200)


class AssistantUpdate(RequestModel):
    """PUT body: fields present replace the stored ones; nested objects merge key by key."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = None
    system_instruction: str | None = None
    first_message: str | None = None
    icon: str | None = Field(default=None, max_length=2000)
    guardrails: str | None = None
    voice: dict[str, Any] | None = None
    llm: dict[str, Any] | None = None
    transcriber: dict[str, Any] | None = None
    speech_settings: dict[str, Any] | None = None
    long_term_memory: dict[str, Any] | None = None
    short_term_memory: dict[str, Any] | None = None
    call_summary: dict[str, Any] | None = None
    recording: dict[str, Any] | None = None
    call_actions: dict[str, Any] | None = None
    knowledge_base_ids: list[str] | None = None
    phone_number_id: str | None = Field(default=None, max_length=64)
    assistant_speaks_first: bool | None = None
    machine_detection_timeout_seconds: int | None = Field(default=None, ge=3, le=60)


class Assistant(ResponseModel):
    id: str
    name: str
    description: str | None
    system_instruction: str
    first_message: str
    icon: str | None
    guardrails: str | None
    voice: dict[str, Any]
    llm: dict[str, Any]
    transcriber: dict[str, Any]
    speech_settings: dict[str, Any]
    long_term_memory: dict[str, Any]
    short_term_memory: dict[str, Any]
    call_summary: dict[str, Any]
    recording: dict[str, Any]
    call_actions: dict[str, Any]
    knowledge_base_ids: list[str]
    phone_number_id: str | None
    assistant_speaks_first: bool
    machine_detection_timeout_seconds: int | None
    created_at: Timestamp
    updated_at: Timestamp
