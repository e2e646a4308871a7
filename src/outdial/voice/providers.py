"""STT, LLM and TTS services for a call, chosen by its resolved configuration.

`fake` services (offline) are used for every call when the settings say so
(`OUTDIAL_VOICE_SERVICES`), or for a part whose provider is `fake` in the assistant.
Otherwise the assistant's `transcriber`, `llm` and `voice` pick a Pipecat service, with the
key from `OUTDIAL_SPEECH__*`. A provider without a key, or one not wired yet, is a
`VoiceConfigError`: the call is not connected to a half-working assistant.
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


def _key(settings: Settings, provider: str) -> str:
    secret: SecretStr | None = getattr(settings.speech, f"{provider}_api_key", None)
    if secret is None or not secret.get_secret_value():
        raise VoiceConfigError(
            f"no key for {provider}: set OUTDIAL_SPEECH__{provider.upper()}_API_KEY"
        )
    return secret.get_secret_value()


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
    from pipecat.services.cartesia.tts import CartesiaTTSService

    voice = config["voice"]
    return CartesiaTTSService(
        api_key=_key(settings, "cartesia"),
        sample_rate=SAMPLE_RATE,
        settings=CartesiaTTSService.Settings(
            model=voice["tts_model"], voice=voice["voice_id"] or None, language=voice["language"]
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
STT: dict[str, Factory] = {"deepgram": _deepgram_stt, "openai": _openai_stt}
LLM: dict[str, Factory] = {"openai": _openai_llm, "google": _google_llm}
TTS: dict[str, Factory] = {
    "cartesia": _cartesia_tts,
    "deepgram": _deepgram_tts,
    "openai": _openai_tts,
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
