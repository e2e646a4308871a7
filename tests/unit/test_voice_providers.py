"""The services a call's configuration builds: Cartesia's speech controls and Google's speech
services, from credentials in the settings. Built with dummy credentials; nothing connects."""

from __future__ import annotations

import json
from typing import Any

import pytest

pytest.importorskip("pipecat")

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pipecat.services.cartesia.tts import CartesiaTTSService
from pipecat.services.google.stt import GoogleSTTService
from pipecat.services.google.tts import GoogleTTSService
from pipecat.transcriptions.language import Language
from pydantic import SecretStr

from outdial.config import Settings, SpeechKeys
from outdial.voice.config import CallContext, resolve
from outdial.voice.providers import VoiceConfigError, cartesia_controls, services_for


def config(**assistant: Any) -> dict[str, Any]:
    fakes = {"llm": {"llm_provider": "fake"}, "transcriber": {"stt_provider": "fake"}}
    return resolve(CallContext(assistant={**fakes, **assistant}, phone_number="+14155550100"))


def real(**keys: str) -> Settings:
    speech = SpeechKeys(**{name: SecretStr(value) for name, value in keys.items()})
    return Settings(voice_services="real", speech=speech)


@pytest.fixture(scope="module")
def service_account() -> str:
    """A service account's JSON key, as Google issues it (the key is made here, unused)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return json.dumps(
        {
            "type": "service_account",
            "project_id": "outdial-test",
            "private_key_id": "key-1",
            "private_key": pem,
            "client_email": "speech@outdial-test.iam.gserviceaccount.com",
            "client_id": "1",
            "token_uri": "https://oauth2.googleapis.com/token",
        }
    )


@pytest.mark.parametrize(
    ("speech", "speed", "controls"),
    [
        ({}, 1.0, {}),  # defaults: neutral style, natural emotions, normal speed
        ({"style": "professional"}, 1.0, {"emotion": "calm"}),
        ({"style": "friendly"}, 1.2, {"speed": 1.2, "emotion": "content"}),
        ({"style": "friendly", "emotions": "off"}, 1.0, {"emotion": "neutral"}),
        ({"emotions": "off"}, 0.8, {"speed": 0.8, "emotion": "neutral"}),
    ],
)
def test_speech_settings_and_speed_become_cartesia_controls(
    speech: dict[str, str], speed: float, controls: dict[str, Any]
) -> None:
    assert cartesia_controls(config(speech_settings=speech, voice={"speed": speed})) == controls


async def test_cartesia_is_built_with_its_generation_config() -> None:
    voice = {"tts_provider": "cartesia", "voice_id": "ava", "speed": 1.3}
    tts = services_for(
        real(cartesia_api_key="dummy"),
        config(voice=voice, speech_settings={"style": "friendly"}),
    ).tts
    assert isinstance(tts, CartesiaTTSService)
    assert tts._settings.voice == "ava" and tts._settings.model == "sonic-3"
    generation = tts._settings.generation_config
    assert generation is not None
    assert generation.model_dump(exclude_none=True) == {"speed": 1.3, "emotion": "content"}

    plain = services_for(real(cartesia_api_key="dummy"), config(voice={"voice_id": "ava"})).tts
    assert plain._settings.generation_config is None  # nothing to steer: Cartesia's defaults


async def test_google_speech_is_built_with_the_language_and_voice(service_account: str) -> None:
    call = config(
        transcriber={"stt_provider": "google", "stt_model": "telephony", "language": "de-DE"},
        voice={
            "tts_provider": "google",
            "voice_id": "de-DE-Chirp3-HD-Kore",
            "language": "de-DE",
            "speed": 1.2,
        },
    )
    services = services_for(real(google_credentials=service_account), call)
    assert isinstance(services.stt, GoogleSTTService)
    assert services.stt._settings.model == "telephony"
    assert services.stt._settings.languages == [Language.DE_DE]
    assert isinstance(services.tts, GoogleTTSService)
    assert services.tts._settings.voice == "de-DE-Chirp3-HD-Kore"
    assert services.tts._settings.language == "de-DE"
    assert services.tts._settings.speaking_rate == 1.2


async def test_google_tts_without_a_voice_speaks_with_a_chirp_voice(service_account: str) -> None:
    tts = services_for(
        real(google_credentials=service_account), config(voice={"tts_provider": "google"})
    ).tts
    assert tts._settings.voice == "en-US-Chirp3-HD-Charon"
    assert tts._settings.language == "en-US"


@pytest.mark.parametrize(
    "part",
    [{"transcriber": {"stt_provider": "google"}}, {"voice": {"tts_provider": "google"}}],
)
def test_google_speech_without_credentials_is_refused(part: dict[str, Any]) -> None:
    # The Gemini key is not enough: Google's speech services take a service account.
    with pytest.raises(VoiceConfigError, match="OUTDIAL_SPEECH__GOOGLE_CREDENTIALS"):
        services_for(real(google_api_key="gemini-key"), config(**part))


def test_credentials_that_are_no_service_account_are_refused_without_showing_them() -> None:
    secret = '{"type": "service_account", "private_key": "s3cret"}'
    with pytest.raises(VoiceConfigError) as refused:
        services_for(real(google_credentials=secret), config(voice={"tts_provider": "google"}))
    assert "not a usable service-account JSON" in str(refused.value)
    assert "s3cret" not in str(refused.value)
    assert "s3cret" not in repr(real(google_credentials=secret))


def test_a_language_google_does_not_know_is_refused(service_account: str) -> None:
    call = config(transcriber={"stt_provider": "google", "language": "klingon"})
    with pytest.raises(VoiceConfigError, match="klingon"):
        services_for(real(google_credentials=service_account), call)
