"""Recording a conversation: both sides of the line, written to WAV as it goes.

The caller's audio is taken where the pipeline stops carrying it (after the user
aggregator), the assistant's audio after the output transport, as it leaves. The caller's
line is the clock: a carrier streams it without a break (silence included, 20 ms a frame),
so its length is the length of the call. The assistant's audio is laid at the caller's
position when it arrives, padded with silence where it was quiet. Frames that arrive late
and in a burst (a busy event loop) keep their place on the caller's clock instead of
stretching the recording, as aligning both tracks to the wall clock (Pipecat's
AudioBufferProcessor) does. Every `CHUNK_SECONDS` of the caller's line, and when the
pipeline ends, the aligned piece is appended to the mono WAV (the two tracks mixed) and,
with `recording.stereo`, to the stereo WAV (caller left, assistant right), so a long call
never sits in memory. The files are written under a `.part` name and renamed when complete;
with `recording.mp3_enabled` MP3 copies are then encoded from the WAVs (libsndfile's MP3
encoder through `soundfile`, which Pipecat depends on). A recording that fails leaves no
files and no URLs; the call itself is not affected.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

with warnings.catch_warnings():
    # Pipecat imports audioop (deprecated in 3.11, gone in 3.13, where it uses audioop-lts).
    warnings.simplefilter("ignore", DeprecationWarning)
    from pipecat.audio.utils import create_stream_resampler, interleave_stereo_audio, mix_audio
    from pipecat.frames.frames import (
        InputAudioRawFrame,
        OutputAudioRawFrame,
    )

from outdial.call import recording as files
from outdial.voice.fakes import SAMPLE_RATE

log = logging.getLogger("outdial.voice")

CHUNK_SECONDS = 10
SAMPLE_WIDTH = 2  # 16-bit PCM
MP3_BLOCK_FRAMES = 8000 * 30


def wanted(config: dict[str, Any]) -> bool:
    return bool((config.get("recording") or {}).get("enabled"))


@dataclass
class Tape:
    """Both tracks between two writes, aligned on the caller's line (16-bit PCM)."""

    chunk_bytes: int
    caller: bytearray = field(default_factory=bytearray)
    assistant: bytearray = field(default_factory=bytearray)

    def hear(self, pcm: bytes) -> tuple[bytes, bytes] | None:
        """The caller's audio; a full chunk of both tracks when one is due."""
        self.caller.extend(pcm)
        return self.take(len(self.caller)) if len(self.caller) >= self.chunk_bytes else None

    def say(self, pcm: bytes) -> None:
        """The assistant's audio, laid at the caller's position (silence before it)."""
        if len(self.assistant) < len(self.caller):
            self.assistant.extend(bytes(len(self.caller) - len(self.assistant)))
        self.assistant.extend(pcm)

    def rest(self) -> tuple[bytes, bytes] | None:
        """What is left when the call ends, both tracks padded to the longer one."""
        size = max(len(self.caller), len(self.assistant))
        return self.take(size) if size else None

    def take(self, size: int) -> tuple[bytes, bytes]:
        caller = bytes(self.caller[:size]).ljust(size, b"\0")
        assistant = bytes(self.assistant[:size]).ljust(size, b"\0")
        del self.caller[:size], self.assistant[:size]
        return caller, assistant


@dataclass
class Recorder:
    """One call's recording in progress."""

    data_dir: Path
    user_id: str
    call_id: str
    stereo: bool
    mp3: bool
    sample_rate: int = SAMPLE_RATE
    frames: int = 0
    failed: bool = False
    _writers: dict[str, wave.Wave_write] = field(default_factory=dict)
    _tape: Tape = field(init=False)
    _input: Any = field(default_factory=create_stream_resampler)
    _output: Any = field(default_factory=create_stream_resampler)

    def __post_init__(self) -> None:
        self._tape = Tape(CHUNK_SECONDS * self.sample_rate * SAMPLE_WIDTH)

    async def hear(self, frame: InputAudioRawFrame) -> None:
        """The caller's audio."""
        pcm = await self._input.resample(frame.audio, frame.sample_rate, self.sample_rate)
        piece = self._tape.hear(pcm)
        if piece is not None:
            self.write(*piece)

    async def say(self, frame: OutputAudioRawFrame) -> None:
        """The assistant's audio as it leaves."""
        pcm = await self._output.resample(frame.audio, frame.sample_rate, self.sample_rate)
        self._tape.say(pcm)

    def end(self) -> None:
        """The call is over: what is left of both tracks goes to the files."""
        piece = self._tape.rest()
        if piece is not None:
            self.write(*piece)

    def _path(self, channels: str, fmt: str = "wav") -> Path:
        return files.file_path(self.data_dir, self.user_id, self.call_id, channels, fmt)

    def _writer(self, channels: str) -> wave.Wave_write:
        writer = self._writers.get(channels)
        if writer is None:
            files.directory(self.data_dir, self.user_id).mkdir(parents=True, exist_ok=True)
            part = self._path(channels).with_suffix(".wav.part")
            writer = wave.open(str(part), "wb")  # noqa: SIM115 - closed in finish()
            writer.setnchannels(2 if channels == "stereo" else 1)
            writer.setsampwidth(SAMPLE_WIDTH)
            writer.setframerate(self.sample_rate)
            self._writers[channels] = writer
        return writer

    def write(self, user: bytes, bot: bytes) -> None:
        """Append one aligned piece of both tracks (same length) to the files."""
        if self.failed or not (user or bot):
            return
        try:
            mixed = mix_audio(user, bot)
            self._writer("mono").writeframes(mixed)
            if self.stereo:
                self._writer("stereo").writeframes(interleave_stereo_audio(user, bot))
            self.frames += len(mixed) // SAMPLE_WIDTH
        except Exception as exc:  # a disk problem must not end the call
            log.error("recording call %s failed: %s", self.call_id, exc)
            self.failed = True

    async def finish(self) -> dict[str, str | None]:
        """Close the files (MP3 copies too) and return the call's recording columns."""
        return await asyncio.to_thread(self._finish)

    def _finish(self) -> dict[str, str | None]:
        columns: dict[str, str | None] = dict.fromkeys(files.COLUMNS.values())
        made: list[Path] = []
        try:
            for channels, writer in self._writers.items():
                writer.close()
                part = self._path(channels).with_suffix(".wav.part")
                if self.failed or self.frames == 0:
                    part.unlink(missing_ok=True)
                    continue
                part.replace(self._path(channels))
                made.append(self._path(channels))
                columns[files.COLUMNS[(channels, "wav")]] = files.url(self.call_id, channels, "wav")
        except Exception as exc:
            log.error("recording call %s failed: %s", self.call_id, exc)
            for path in made:
                path.unlink(missing_ok=True)
            return dict.fromkeys(files.COLUMNS.values())
        if self.mp3:
            for path in made:
                channels = "stereo" if path.stem.endswith("-stereo") else "mono"
                if _encode_mp3(path, self._path(channels, "mp3")):
                    columns[files.COLUMNS[(channels, "mp3")]] = files.url(
                        self.call_id, channels, "mp3"
                    )
        return columns


def _encode_mp3(source: Path, target: Path) -> bool:
    """An MP3 copy of a WAV (libsndfile's LAME through soundfile); False when it cannot."""
    part = target.with_suffix(".mp3.part")
    try:
        import soundfile

        with (
            soundfile.SoundFile(str(source)) as wav,
            soundfile.SoundFile(
                str(part),
                "w",
                samplerate=wav.samplerate,
                channels=wav.channels,
                format="MP3",
                subtype="MPEG_LAYER_III",
            ) as mp3,
        ):
            for block in wav.blocks(blocksize=MP3_BLOCK_FRAMES, dtype="int16"):
                mp3.write(block)
        part.replace(target)
    except Exception as exc:  # e.g. a system libsndfile built without MP3
        log.warning("no MP3 copy of %s: %s", source.name, exc)
        part.unlink(missing_ok=True)
        return False
    return True


def for_call(data_dir: Path, user_id: str, call_id: str, config: dict[str, Any]) -> Recorder:
    settings = config.get("recording") or {}
    return Recorder(
        data_dir=data_dir,
        user_id=user_id,
        call_id=call_id,
        stereo=bool(settings.get("stereo", True)),
        mp3=bool(settings.get("mp3_enabled", True)),
    )
