"""One place where outdial reads its configuration (environment variables `OUTDIAL_*`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class SpeechKeys(BaseModel):
    """API keys of the speech and language providers (`OUTDIAL_SPEECH__OPENAI_API_KEY`, …)."""

    deepgram_api_key: SecretStr | None = None
    openai_api_key: SecretStr | None = None
    google_api_key: SecretStr | None = None
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
    log_level: str = "INFO"
    speech: SpeechKeys = SpeechKeys()

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'outdial.db').resolve()}"

    @property
    def resolved_public_base_url(self) -> str:
        return (self.public_base_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")
