"""Vobiz's audio-stream WebSocket protocol (Plivo-compatible) as a Pipecat frame serializer.

Vobiz → us: `start` (ids nested under `start`; a reconnect sends a new `start` with a new
`streamId` and the same `callId`), `media` (base64 μ-law, 20 ms), `dtmf`, `playedStream`
(a checkpoint we sent has been played), `clearedAudio`. There is no inbound `stop`: the
socket closes. Us → Vobiz: `playAudio`, `clearAudio` (barge-in), `checkpoint`, each with the
current `streamId`.

State is keyed on the call (`callId`): the stream id is updated by every `start`. Hanging up
is not the serializer's business here: a call ends through the provider's hang-up (the
carrier adapter) or when the caller goes away.

A checkpoint follows each assistant utterance (`CheckpointAfterSpeech`, right after the TTS):
the output transport hands a serializer audio, interruptions and transport messages, but not
the TTS's stop frame, so the end of an utterance reaches it as a queued message behind the
utterance's audio. Vobiz answers each with `playedStream` once that audio has played.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from pipecat.audio.dtmf.types import KeypadEntry
from pipecat.audio.utils import create_stream_resampler, pcm_to_ulaw, ulaw_to_pcm
from pipecat.frames.frames import (
    AudioRawFrame,
    Frame,
    InputAudioRawFrame,
    InputDTMFFrame,
    InterruptionFrame,
    OutputTransportMessageFrame,
    OutputTransportMessageUrgentFrame,
    TTSStoppedFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor, FrameProcessorSetup
from pipecat.serializers.base_serializer import FrameSerializer

VOBIZ_SAMPLE_RATE = 8000


class VobizFrameSerializer(FrameSerializer):
    """Converts between Pipecat frames and Vobiz stream messages (μ-law, 8 kHz)."""

    def __init__(self, stream_id: str, call_id: str, params: Any = None) -> None:
        super().__init__(params or FrameSerializer.InputParams())
        self.stream_id = stream_id
        self.call_id = call_id
        self.sent: list[str] = []  # checkpoints sent after the assistant's utterances
        self.played: list[str] = []  # checkpoints Vobiz reported as played
        self._sample_rate = VOBIZ_SAMPLE_RATE
        self._input_resampler = create_stream_resampler()
        self._output_resampler = create_stream_resampler()

    async def setup(self, setup: FrameProcessorSetup) -> None:  # type: ignore[override]
        self._sample_rate = setup.audio_in_sample_rate or VOBIZ_SAMPLE_RATE

    def checkpoint(self, name: str) -> dict[str, Any]:
        """A checkpoint message: Vobiz answers `playedStream` once audio before it has played."""
        return {"event": "checkpoint", "streamId": self.stream_id, "name": name}

    def next_checkpoint(self) -> dict[str, Any]:
        """The checkpoint after the assistant's next utterance: `utterance-1`, `utterance-2`, …"""
        name = f"utterance-{len(self.sent) + 1}"
        self.sent.append(name)
        return self.checkpoint(name)

    async def serialize(self, frame: Frame) -> str | bytes | None:
        if isinstance(frame, InterruptionFrame):
            return json.dumps({"event": "clearAudio", "streamId": self.stream_id})
        if isinstance(frame, AudioRawFrame):
            ulaw = await pcm_to_ulaw(
                frame.audio, frame.sample_rate, VOBIZ_SAMPLE_RATE, self._output_resampler
            )
            if not ulaw:
                return None
            return json.dumps(
                {
                    "event": "playAudio",
                    "streamId": self.stream_id,
                    "media": {
                        "contentType": "audio/x-mulaw",
                        "sampleRate": VOBIZ_SAMPLE_RATE,
                        "payload": base64.b64encode(ulaw).decode("ascii"),
                    },
                }
            )
        if isinstance(frame, OutputTransportMessageFrame | OutputTransportMessageUrgentFrame):
            if self.should_ignore_frame(frame):
                return None
            message = frame.message
            if isinstance(message, dict) and message.get("event") in ("checkpoint", "clearAudio"):
                message = {**message, "streamId": self.stream_id}
            return json.dumps(message)
        return None

    async def deserialize(self, data: str | bytes) -> Frame | None:
        try:
            message = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None
        if not isinstance(message, dict):
            return None
        event = message.get("event")
        if event == "media":
            payload = (message.get("media") or {}).get("payload")
            if not payload:
                return None
            pcm = await ulaw_to_pcm(
                base64.b64decode(payload),
                VOBIZ_SAMPLE_RATE,
                self._sample_rate,
                self._input_resampler,
            )
            if not pcm:
                return None
            return InputAudioRawFrame(audio=pcm, num_channels=1, sample_rate=self._sample_rate)
        if event == "start":
            start = message.get("start") or {}
            if start.get("callId") in (None, self.call_id):
                self.stream_id = str(start.get("streamId") or self.stream_id)
            return None
        if event == "dtmf":
            try:
                return InputDTMFFrame(KeypadEntry(str((message.get("dtmf") or {}).get("digit"))))
            except ValueError:
                return None
        if event == "playedStream":
            self.played.append(str(message.get("name", "")))
        return None


class CheckpointAfterSpeech(FrameProcessor):
    """Between the TTS and the output transport: follows the audio of each utterance (its
    `TTSStoppedFrame`) with the serializer's next checkpoint, which the output transport
    sends once the audio queued before it has been written. A barge-in that drops the
    utterance's queued audio drops its checkpoint too (uninterruptible speech keeps both)."""

    def __init__(self, serializer: VobizFrameSerializer) -> None:
        super().__init__(enable_direct_mode=True)  # no queue or task of its own per frame
        self.serializer = serializer

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)
        if isinstance(frame, TTSStoppedFrame) and direction == FrameDirection.DOWNSTREAM:
            checkpoint = OutputTransportMessageFrame(message=self.serializer.next_checkpoint())
            checkpoint.interruptible = frame.interruptible
            await self.push_frame(checkpoint)
