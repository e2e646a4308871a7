"""One place where outdial reads its configuration (environment variables `OUTDIAL_*`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class SpeechKeys(BaseModel):
    """Credentials of the speech and language providers (`OUTDIAL_SPEECH__OPENAI_API_KEY`, …)."""

    deepgram_api_key: SecretStr | None = None
    openai_api_key: SecretStr | None = None
    google_api_key: SecretStr | None = None  # Gemini (the LLM)
    google_credentials: SecretStr | None = Field(
        default=None,
        description="Google Cloud speech (STT and TTS): a service account's JSON key, the "
        "file's content.",
    )
    cartesia_api_key: SecretStr | None = None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="OUTDIAL_", env_nested_delimiter="__", extra="ignore"
    )

    data_dir: Path = Path("data")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy async URL; default is an SQLite file in data_dir.",
    )
    host: str = "127.0.0.1"
    port: int = 8000
    public_base_url: str | None = Field(
        default=None, description="Base URL the carriers call back; default http://host:port."
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description="Fernet key for provider credentials; generated into data_dir when absent.",
    )
    telephony: Literal["live", "simulated"] = "simulated"
    simulator_url: str | None = Field(
        default=None,
        description="A standalone simulator (`outdial simulator`); default: the one built in.",
    )
    dialer: bool = Field(default=True, description="Run a dialer worker inside `serve`.")
    dialer_lease_seconds: float = Field(
        default=60,
        gt=0,
        description="How long a worker holds a claimed call before others step in.",
    )
    dialer_silence_seconds: float = Field(
        default=120,
        gt=0,
        description="No news of a ringing call this long (five times this for an answered "
        "one): ask the carrier, and end the call as lost if it does not know it.",
    )
    dialer_sweep_seconds: float = Field(default=1.0, gt=0)
    dialer_reap_seconds: float = Field(default=5.0, gt=0)
    default_region: str = Field(default="US", min_length=2, max_length=2)
    max_upload_bytes: int = 256 * 1024 * 1024
    rate_limit_tiers: dict[str, int] = Field(
        default={"development": 100, "production": 1000},
        description="Requests per minute per API key, by tier name (upstream's two tiers).",
    )
    rate_limit_default_tier: str = Field(
        default="production", description="The tier of a key created without `--tier`."
    )
    idempotency_key_hours: float = Field(
        default=24, gt=0, description="How long an Idempotency-Key and its response are kept."
    )
    max_calls_per_number_per_day: int = Field(
        default=3,
        ge=0,
        description="Calls one account may place to one number in any rolling 24 hours "
        "(campaign dials and single calls together); 0 turns the cap off.",
    )
    webhooks: bool = Field(
        default=True, description="Deliver lifecycle webhooks from this process (serve, worker)."
    )
    webhook_timeout_seconds: float = Field(
        default=10, gt=0, le=60, description="How long a webhook POST may take in all."
    )
    webhook_lease_seconds: float = Field(
        default=60,
        gt=0,
        description="How long a worker holds a delivery it is sending; an unfinished one is "
        "sent again after this.",
    )
    webhook_max_attempts: int = Field(
        default=16, ge=1, le=100, description="POSTs of one event to one endpoint before it fails."
    )
    webhook_retry_base_seconds: float = Field(
        default=10, gt=0, description="Wait before the first retry; it doubles for each next one."
    )
    webhook_retry_max_seconds: float = Field(
        default=6 * 3600, gt=0, description="The longest wait between two attempts."
    )
    webhook_poll_seconds: float = Field(default=1.0, gt=0)
    webhook_retention_days: float = Field(
        default=30, gt=0, description="How long finished deliveries and their events are kept."
    )
    log_level: str = "INFO"
    speech: SpeechKeys = SpeechKeys()
    voice_services: Literal["auto", "fake", "real"] = Field(
        default="auto",
        description="Speech and language services of the voice runtime: `fake` (offline, "
        "deterministic), `real` (the assistant's providers, keys from `speech`), or `auto`: "
        "fake with simulated telephony, real with live telephony.",
    )

    @model_validator(mode="after")
    def _tiers_make_sense(self) -> Settings:
        if any(limit < 1 for limit in self.rate_limit_tiers.values()):
            raise ValueError("every rate-limit tier allows at least 1 request per minute")
        if self.rate_limit_default_tier not in self.rate_limit_tiers:
            raise ValueError(
                f"rate_limit_default_tier {self.rate_limit_default_tier!r} is not one of "
                f"the rate_limit_tiers ({', '.join(sorted(self.rate_limit_tiers))})"
            )
        if self.webhook_lease_seconds <= self.webhook_timeout_seconds:
            raise ValueError("webhook_lease_seconds must be longer than webhook_timeout_seconds")
        return self

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'outdial.db').resolve()}"

    @property
    def resolved_public_base_url(self) -> str:
        return (self.public_base_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def fake_voice(self) -> bool:
        """Whether the voice runtime uses the offline fake services for every call."""
        if self.voice_services == "auto":
            return self.telephony == "simulated"
        return self.voice_services == "fake"

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")
