"""STT, LLM and TTS services for a call, chosen by its resolved configuration.

`fake` services (offline) are used for every call when the settings say so
(`OUTDIAL_VOICE_SERVICES`), or for a part whose provider is `fake` in the assistant.
Otherwise the assistant's `transcriber`, `llm` and `voice` pick a Pipecat service, with the
key from `OUTDIAL_SPEECH__*` (Google's speech services: a service account's JSON). A provider
without its credentials, or one not wired yet, is a `VoiceConfigError`: the call is not
connected to a half-working assistant.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

from outdial.config import Settings
from outdial.voice.fakes import SAMPLE_RATE, FakeLLMService, FakeSTTService, FakeTTSService


class VoiceConfigError(RuntimeError):
    """The call's configuration names a provider this server cannot use."""


@dataclass(frozen=True)
class Services:
    stt: Any
    llm: Any
    tts: Any


# speech_settings.style → the emotion Cartesia is steered to while `emotions` is `natural`
# (None: the model reads the feeling from the text); `emotions` `off` is always neutral.
CARTESIA_STYLE_EMOTIONS: dict[str, str | None] = {
    "neutral": None,
    "professional": "calm",
    "friendly": "content",
}
GOOGLE_DEFAULT_VOICE = "en-US-Chirp3-HD-Charon"  # Google's streaming TTS takes Chirp 3 HD voices


def _secret(settings: Settings, name: str, what: str) -> str:
    secret: SecretStr | None = getattr(settings.speech, name, None)
    if secret is None or not secret.get_secret_value():
        raise VoiceConfigError(f"no {what}: set OUTDIAL_SPEECH__{name.upper()}")
    return secret.get_secret_value()


def _key(settings: Settings, provider: str) -> str:
    return _secret(settings, f"{provider}_api_key", f"key for {provider}")


def cartesia_controls(config: dict[str, Any]) -> dict[str, Any]:
    """Cartesia's `generation_config` for a call: `speed` from `voice.speed`, `emotion` from
    `speech_settings` (the table in docs/voice.md). Empty when everything is the default."""
    speech = config["speech_settings"]
    emotion = (
        "neutral" if speech["emotions"] == "off" else CARTESIA_STYLE_EMOTIONS.get(speech["style"])
    )
    speed = config["voice"]["speed"]
    controls: dict[str, Any] = {}
    if speed != 1.0:
        controls["speed"] = speed
    if emotion is not None:
        controls["emotion"] = emotion
    return controls


def _deepgram_stt(settings: Settings, config: dict[str, Any]) -> Any:
    from pipecat.services.deepgram.stt import DeepgramSTTService

    transcriber = config["transcriber"]
    return DeepgramSTTService(
        api_key=_key(settings, "deepgram"),
        sample_rate=SAMPLE_RATE,
        settings=DeepgramSTTService.Settings(
            model=transcriber["stt_model"], language=transcriber["language"]
        ),
    )


def _openai_stt(settings: Settings, config: dict[str, Any]) -> Any:
    from pipecat.services.openai.stt import OpenAISTTService

    transcriber = config["transcriber"]
    return OpenAISTTService(
        api_key=_key(settings, "openai"),
        settings=OpenAISTTService.Settings(
            model=transcriber["stt_model"], language=transcriber["language"]
        ),
    )


def _openai_llm(settings: Settings, config: dict[str, Any]) -> Any:
    from pipecat.services.openai.llm import OpenAILLMService

    return OpenAILLMService(
        api_key=_key(settings, "openai"),
        settings=OpenAILLMService.Settings(model=config["llm"]["model"]),
    )


def _google_llm(settings: Settings, config: dict[str, Any]) -> Any:
    from pipecat.services.google.llm import GoogleLLMService

    return GoogleLLMService(
        api_key=_key(settings, "google"),
        settings=GoogleLLMService.Settings(model=config["llm"]["model"]),
    )


def _cartesia_tts(settings: Settings, config: dict[str, Any]) -> Any:
    from pipecat.services.cartesia.tts import CartesiaTTSService, GenerationConfig

    voice = config["voice"]
    controls = cartesia_controls(config)
    return CartesiaTTSService(
        api_key=_key(settings, "cartesia"),
        sample_rate=SAMPLE_RATE,
        settings=CartesiaTTSService.Settings(
            model=voice["tts_model"],
            voice=voice["voice_id"] or None,
            language=voice["language"],
            generation_config=GenerationConfig(**controls) if controls else None,
        ),
    )


def _google_language(language: str) -> Any:
    from pipecat.transcriptions.language import Language

    try:
        return Language(language)
    except ValueError as exc:
        raise VoiceConfigError(f"google speech does not know the language {language!r}") from exc


def _google_service(settings: Settings, service: Any, service_settings: Any) -> Any:
    """Pipecat's Google STT or TTS, which reads the service account as it is built."""
    credentials = _secret(
        settings, "google_credentials", "service-account credentials for google speech"
    )
    try:
        return service(credentials=credentials, sample_rate=SAMPLE_RATE, settings=service_settings)
    except ValueError as exc:  # not JSON, not a service account, no project id
        raise VoiceConfigError(
            "OUTDIAL_SPEECH__GOOGLE_CREDENTIALS is not a usable service-account JSON key "
            f"({type(exc).__name__})"
        ) from exc


def _google_stt(settings: Settings, config: dict[str, Any]) -> Any:
    from pipecat.services.google.stt import GoogleSTTService

    transcriber = config["transcriber"]
    language = _google_language(transcriber["language"])
    return _google_service(
        settings,
        GoogleSTTService,
        GoogleSTTService.Settings(model=transcriber["stt_model"], languages=[language]),
    )


def _google_tts(settings: Settings, config: dict[str, Any]) -> Any:
    from pipecat.services.google.tts import GoogleTTSService

    voice = config["voice"]
    return _google_service(
        settings,
        GoogleTTSService,
        GoogleTTSService.Settings(
            voice=voice["voice_id"] or GOOGLE_DEFAULT_VOICE,
            language=_google_language(voice["language"]),
            speaking_rate=voice["speed"],
        ),
    )


def _deepgram_tts(settings: Settings, config: dict[str, Any]) -> Any:
    from pipecat.services.deepgram.tts import DeepgramTTSService

    voice = config["voice"]
    return DeepgramTTSService(
        api_key=_key(settings, "deepgram"),
        sample_rate=SAMPLE_RATE,
        settings=DeepgramTTSService.Settings(voice=voice["voice_id"] or None, speed=voice["speed"]),
    )


def _openai_tts(settings: Settings, config: dict[str, Any]) -> Any:
    from pipecat.services.openai.tts import OpenAITTSService

    voice = config["voice"]
    return OpenAITTSService(
        api_key=_key(settings, "openai"),
        sample_rate=SAMPLE_RATE,
        settings=OpenAITTSService.Settings(
            model=voice["tts_model"], voice=voice["voice_id"] or "alloy", speed=voice["speed"]
        ),
    )


Factory = Callable[[Settings, dict[str, Any]], Any]
STT: dict[str, Factory] = {
    "deepgram": _deepgram_stt,
    "openai": _openai_stt,
    "google": _google_stt,
}
LLM: dict[str, Factory] = {"openai": _openai_llm, "google": _google_llm}
TTS: dict[str, Factory] = {
    "cartesia": _cartesia_tts,
    "deepgram": _deepgram_tts,
    "openai": _openai_tts,
    "google": _google_tts,
}


def _pick(
    kind: str,
    table: dict[str, Factory],
    provider: str,
    fake: Callable[[], Any],
    settings: Settings,
    config: dict[str, Any],
) -> Any:
    if settings.fake_voice or provider == "fake":
        return fake()
    factory = table.get(provider)
    if factory is None:
        raise VoiceConfigError(f"{kind} provider {provider!r} is not supported yet")
    return factory(settings, config)


def llm_for(settings: Settings, config: dict[str, Any]) -> Any:
    """The LLM service a resolved configuration talks with (calls and `POST /chat`)."""
    return _pick("llm", LLM, config["llm"]["llm_provider"], FakeLLMService, settings, config)


def services_for(settings: Settings, config: dict[str, Any]) -> Services:
    """The three services a call's pipeline runs with."""
    return Services(
        stt=_pick(
            "stt", STT, config["transcriber"]["stt_provider"], FakeSTTService, settings, config
        ),
        llm=llm_for(settings, config),
        tts=_pick("tts", TTS, config["voice"]["tts_provider"], FakeTTSService, settings, config),
    )
