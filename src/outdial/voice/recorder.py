"""Recording a conversation: Pipecat's AudioBufferProcessor, written to WAV as it goes.

The processor sits after the output transport, where the caller's audio (input) and the
assistant's audio as it leaves (output) both pass. It hands over both tracks, aligned and
padded with silence for the gaps, every `CHUNK_SECONDS` and when the pipeline ends; each
chunk is appended to the mono WAV (the two tracks mixed) and, with `recording.stereo`, to
the stereo WAV (caller left, assistant right), so a long call never sits in memory. The
files are written under a `.part` name and renamed when complete; with
`recording.mp3_enabled` MP3 copies are then encoded from the WAVs (libsndfile's MP3 encoder
through `soundfile`, which Pipecat depends on). A recording that fails leaves no files and
no URLs; the call itself is not affected.
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
    from pipecat.audio.utils import interleave_stereo_audio, mix_audio
    from pipecat.processors.audio.audio_buffer_processor import AudioBufferProcessor

from outdial.call import recording as files
from outdial.voice.fakes import SAMPLE_RATE

log = logging.getLogger("outdial.voice")

CHUNK_SECONDS = 10
SAMPLE_WIDTH = 2  # 16-bit PCM
MP3_BLOCK_FRAMES = 8000 * 30


def wanted(config: dict[str, Any]) -> bool:
    return bool((config.get("recording") or {}).get("enabled"))


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

    def processor(self) -> AudioBufferProcessor:
        buffer = AudioBufferProcessor(
            sample_rate=self.sample_rate,
            num_channels=2,
            buffer_size=CHUNK_SECONDS * self.sample_rate * SAMPLE_WIDTH,
            auto_start_recording=True,
        )
        # A plain function: Pipecat runs each call in a task of its own, in order.
        buffer.add_event_handler("on_track_audio_data", self._chunk)
        return buffer

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

    def _chunk(self, _processor: Any, user: bytes, bot: bytes, _rate: int, _channels: int) -> None:
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
        await asyncio.sleep(0)  # the last chunk's handler, if Pipecat has not run it yet
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
