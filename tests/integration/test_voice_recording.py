"""Call recording: an assistant with `recording.enabled` leaves the call's audio behind.

End to end: the dialer, the simulator's scripted caller and the real pipeline with the
fake services; the recording is Pipecat's AudioBufferProcessor, written as WAV (and MP3)
under the data directory and served by `GET /calls/{id}/recording`. SQLite and PostgreSQL.
"""

from __future__ import annotations

import io
import warnings
import wave
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import soundfile
from tests.dialing import HUMANS_ONLY, Service, campaign_when, wait_for
from tests.support import Tenant
from tests.voice import acting

from outdial.voice import fake_speech

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

PERSON = "+14155550177"
SCRIPT = ["I would like the gold plan", "Goodbye"]
SPOKEN = [
    "Hi Ann, this is Ava about your renewal.",
    "Thanks, I heard: I would like the gold plan.",
    "Thank you for your time. Goodbye!",
]
URLS = ("recording_url", "stereo_recording_url", "recording_mp3_url", "stereo_recording_mp3_url")


async def recorded_call(
    tenant: Tenant, provider: str, recording: dict[str, Any] | None
) -> dict[str, Any]:
    """A campaign's one conversation, once stored; `recording` is the assistant's setting."""
    number = await tenant.phone_number(provider=provider, calls_per_second=100)
    fields = {"recording": recording} if recording is not None else {}
    assistant = await tenant.assistant(system_instruction="You sell renewals.", **acting(fields))
    campaign = await tenant.campaign(
        assistant_id=assistant["id"],
        phone_number_id=number["id"],
        channel=provider,
        opening_message_template="Hi {{ name }}, this is Ava about your renewal.",
        recipients=[{"phone_number": PERSON, "metadata": {"name": "Ann"}}],
    )
    await tenant.ok("POST", f"/campaign/{campaign['id']}/start")
    await campaign_when(tenant, campaign["id"], lambda c: c["status"] == "completed", 60)

    async def stored() -> Any:
        calls = await tenant.ok("GET", "/calls", params={"campaign_id": campaign["id"]})
        call = await tenant.ok("GET", f"/calls/{calls[0]['id']}")
        return call if call["summary"] and call["ended_reason"] == "assistant_hung_up" else None

    return dict(await wait_for(stored, timeout=30))


async def fetch(tenant: Tenant, url: str) -> httpx.Response:
    return await tenant.get(url)


def span(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def read_wav(body: bytes) -> tuple[Any, bytes]:
    with wave.open(io.BytesIO(body)) as wav:
        return wav.getparams(), wav.readframes(wav.getnframes())


def channel(frames: bytes, index: int) -> bytes:
    """One channel of 16-bit stereo PCM."""
    return audioop.tomono(frames, 2, 1 - index, index)


def words_in(pcm: bytes) -> list[str]:
    """What the carried-text audio in 16-bit PCM says (as the fake STT hears it)."""
    return [text for text in fake_speech.decode_all(audioop.lin2ulaw(pcm, 2)) if text.strip()]


def recording_files(service: Service) -> list[Path]:
    root = Path(service.app.state.settings.data_dir) / "recordings"
    return sorted(path for path in root.rglob("*") if path.is_file()) if root.exists() else []


async def test_a_recorded_call_serves_its_audio(service: Service) -> None:
    await service.scenario(**HUMANS_ONLY, caller_script=SCRIPT)
    tenant = await service.tenant()
    call = await recorded_call(tenant, "twilio", {"enabled": True})
    call_id = call["id"]
    assert {key: call[key] for key in URLS} == {
        "recording_url": f"/calls/{call_id}/recording",
        "stereo_recording_url": f"/calls/{call_id}/recording?channels=stereo",
        "recording_mp3_url": f"/calls/{call_id}/recording?format=mp3",
        "stereo_recording_mp3_url": f"/calls/{call_id}/recording?channels=stereo&format=mp3",
    }

    mono = await fetch(tenant, call["recording_url"])
    assert mono.status_code == 200, mono.text
    assert mono.headers["content-type"] == "audio/wav"
    params, frames = read_wav(mono.content)
    assert (params.nchannels, params.sampwidth, params.framerate) == (1, 2, 8000)
    seconds = params.nframes / params.framerate
    # The recording holds the conversation (the caller's line from the moment it joined the
    # stream) and no more than the call lasted.
    assert span(call["transcript"][0]["started_at"], call["transcript"][-1]["ended_at"]) <= seconds
    assert seconds <= span(call["answered_at"], call["ended_at"]) + 0.5
    assert audioop.rms(frames, 2) > 0

    stereo = await fetch(tenant, call["stereo_recording_url"])
    assert stereo.status_code == 200 and stereo.headers["content-type"] == "audio/wav"
    params, frames = read_wav(stereo.content)
    assert (params.nchannels, params.sampwidth, params.framerate) == (2, 2, 8000)
    assert abs(params.nframes / params.framerate - seconds) < 0.05
    # The caller on the left, the assistant on the right, each saying its own lines.
    assert words_in(channel(frames, 0)) == SCRIPT
    assert words_in(channel(frames, 1)) == SPOKEN

    for key in ("recording_mp3_url", "stereo_recording_mp3_url"):
        mp3 = await fetch(tenant, call[key])
        assert mp3.status_code == 200 and mp3.headers["content-type"] == "audio/mpeg"
        decoded, rate = soundfile.read(io.BytesIO(mp3.content), dtype="int16")
        assert rate == 8000 and decoded.ndim == (2 if key.startswith("stereo") else 1)
        # MP3 frames pad the end a little.
        assert abs(len(decoded) / rate - seconds) < 0.2, (len(decoded), seconds)

    user_dir = Path(service.app.state.settings.data_dir) / "recordings" / tenant.user_id
    assert sorted(path.name for path in user_dir.iterdir()) == sorted(
        [f"{call_id}.wav", f"{call_id}-stereo.wav", f"{call_id}.mp3", f"{call_id}-stereo.mp3"]
    )

    # Another account sees no such call, exactly as for an id nobody has.
    intruder = await service.tenant("intruder")
    for key in URLS:
        theirs = await fetch(intruder, call[key])
        assert (theirs.status_code, theirs.json()) == (404, {"detail": "Call not found"})


async def test_mono_only_without_stereo_and_mp3(service: Service) -> None:
    await service.scenario(**HUMANS_ONLY, caller_script=SCRIPT)
    tenant = await service.tenant()
    call = await recorded_call(
        tenant, "vobiz", {"enabled": True, "stereo": False, "mp3_enabled": False}
    )
    assert call["recording_url"] == f"/calls/{call['id']}/recording"
    assert call["stereo_recording_url"] is None
    assert call["recording_mp3_url"] is call["stereo_recording_mp3_url"] is None
    params, frames = read_wav((await fetch(tenant, call["recording_url"])).content)
    assert (params.nchannels, params.framerate) == (1, 8000) and params.nframes > 8000
    assert audioop.rms(frames, 2) > 0
    for query in ("?channels=stereo", "?format=mp3", "?channels=stereo&format=mp3"):
        missing = await fetch(tenant, f"/calls/{call['id']}/recording{query}")
        assert (missing.status_code, missing.json()) == (404, {"detail": "Recording not found"})
    assert [path.suffix for path in recording_files(service)] == [".wav"]


@pytest.mark.parametrize("recording", [None, {"enabled": False}])
async def test_no_recording_unless_enabled(
    service: Service, recording: dict[str, Any] | None
) -> None:
    await service.scenario(**HUMANS_ONLY, caller_script=SCRIPT)
    tenant = await service.tenant()
    call = await recorded_call(tenant, "twilio", recording)
    assert call["transcript"] and call["assistant_config"]["recording"]["enabled"] is False
    assert all(call[key] is None for key in URLS)
    for query in ("", "?channels=stereo", "?format=mp3"):
        missing = await fetch(tenant, f"/calls/{call['id']}/recording{query}")
        assert (missing.status_code, missing.json()) == (404, {"detail": "Recording not found"})
    assert recording_files(service) == []
