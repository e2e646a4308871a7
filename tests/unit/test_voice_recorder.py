"""The recorder's files: WAVs appended chunk by chunk, MP3 copies, and failures that leave
nothing behind (the pipeline side is tests/integration/test_voice_recording.py)."""

from __future__ import annotations

import wave
from pathlib import Path

import pytest

from outdial.voice import recorder

CALL = "call_0123456789abcdefghij"
USER = "user_1"


def a_recorder(tmp_path: Path, **recording: bool) -> recorder.Recorder:
    return recorder.for_call(tmp_path, USER, CALL, {"recording": {"enabled": True, **recording}})


def tone(samples: int, level: int) -> bytes:
    return b"".join(level.to_bytes(2, "little", signed=True) for _ in range(samples))


def test_only_an_enabled_recording_is_wanted() -> None:
    assert recorder.wanted({"recording": {"enabled": True}})
    assert not recorder.wanted({"recording": {"enabled": False}})
    assert not recorder.wanted({})


async def test_chunks_append_to_mono_and_stereo_wavs(tmp_path: Path) -> None:
    rec = a_recorder(tmp_path, mp3_enabled=False)
    for _ in range(3):  # caller at 1000, assistant at 200: mixed 1200, split L/R in stereo
        rec.write(tone(800, 1000), tone(800, 200))
    columns = await rec.finish()
    assert columns == {
        "recording_url": f"/calls/{CALL}/recording",
        "stereo_recording_url": f"/calls/{CALL}/recording?channels=stereo",
        "recording_mp3_url": None,
        "stereo_recording_mp3_url": None,
    }
    folder = tmp_path / "recordings" / USER
    assert sorted(p.name for p in folder.iterdir()) == [f"{CALL}-stereo.wav", f"{CALL}.wav"]
    with wave.open(str(folder / f"{CALL}.wav")) as mono:
        assert (mono.getnchannels(), mono.getframerate(), mono.getnframes()) == (1, 8000, 2400)
        assert mono.readframes(1) == tone(1, 1200)
    with wave.open(str(folder / f"{CALL}-stereo.wav")) as stereo:
        assert (stereo.getnchannels(), stereo.getnframes()) == (2, 2400)
        assert stereo.readframes(1) == tone(1, 1000) + tone(1, 200)


async def test_mp3_copies_unless_the_encoder_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rec = a_recorder(tmp_path, stereo=False)
    rec.write(tone(8000, 1000), tone(8000, 0))
    columns = await rec.finish()
    assert columns["recording_mp3_url"] == f"/calls/{CALL}/recording?format=mp3"
    assert columns["stereo_recording_url"] is columns["stereo_recording_mp3_url"] is None
    assert (tmp_path / "recordings" / USER / f"{CALL}.mp3").stat().st_size > 0

    import soundfile

    def no_mp3(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("this libsndfile has no MP3")

    monkeypatch.setattr(soundfile, "SoundFile", no_mp3)
    other = recorder.for_call(tmp_path, USER, "call_other", {"recording": {"enabled": True}})
    other.write(tone(800, 1000), tone(800, 0))
    columns = await other.finish()
    assert columns["recording_url"] and columns["stereo_recording_url"]
    assert columns["recording_mp3_url"] is columns["stereo_recording_mp3_url"] is None
    assert not list((tmp_path / "recordings" / USER).glob("call_other*.mp3*"))


async def test_a_failed_or_empty_recording_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = a_recorder(tmp_path)
    assert set((await empty.finish()).values()) == {None}

    broken = a_recorder(tmp_path)
    broken.write(tone(800, 1000), tone(800, 0))
    monkeypatch.setattr(wave.Wave_write, "writeframes", _disk_full)
    broken.write(tone(800, 1000), tone(800, 0))
    monkeypatch.undo()
    assert broken.failed
    assert set((await broken.finish()).values()) == {None}
    assert list((tmp_path / "recordings" / USER).iterdir()) == []


def _disk_full(*_args: object) -> None:
    raise OSError(28, "No space left on device")


def test_the_callers_line_is_the_clock() -> None:
    tape = recorder.Tape(chunk_bytes=8000)
    # The assistant starts speaking 100 samples into the call: silence before its audio.
    assert tape.hear(tone(100, 1000)) is None
    tape.say(tone(50, 200))
    # A stalled loop delivers 300 samples of the assistant, then the caller's late frames:
    # both keep their place on the caller's line, nothing is stretched.
    tape.say(tone(300, 300))
    assert tape.hear(tone(400, 1000)) is None
    caller, assistant = tape.rest() or (b"", b"")
    assert len(caller) == len(assistant) == 2 * 500
    assert assistant == tone(100, 0) + tone(50, 200) + tone(300, 300) + tone(50, 0)
    assert caller == tone(500, 1000)
    assert tape.rest() is None


def test_a_full_chunk_of_the_callers_line_is_written_with_what_the_assistant_said() -> None:
    tape = recorder.Tape(chunk_bytes=2 * 200)
    tape.say(tone(250, 300))  # the opening, before the caller's audio reaches us
    piece = tape.hear(tone(200, 1000))
    assert piece == (tone(200, 1000), tone(200, 300))
    # The assistant's lead carries into the next piece.
    assert tape.rest() == (tone(50, 0), tone(50, 300))
