"""Vobiz's stream protocol: what the serializer sends and what it understands."""

from __future__ import annotations

import base64
import json

from pipecat.frames.frames import (
    InputAudioRawFrame,
    InputDTMFFrame,
    InterruptionFrame,
    OutputAudioRawFrame,
    OutputTransportMessageFrame,
    TTSAudioRawFrame,
    TTSSpeakFrame,
    TTSStoppedFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.tests.utils import run_test

from outdial.voice.fakes import FakeTTSService
from outdial.voice.vobiz_serializer import CheckpointAfterSpeech, VobizFrameSerializer

SILENCE_PCM = b"\x00\x00" * 160  # 20 ms at 8 kHz


async def test_audio_out_is_play_audio_in_mulaw_with_the_stream_id() -> None:
    serializer = VobizFrameSerializer("stream-1", "call-uuid")
    sent = json.loads(await serializer.serialize(OutputAudioRawFrame(SILENCE_PCM, 8000, 1)))
    assert sent["event"] == "playAudio" and sent["streamId"] == "stream-1"
    assert sent["media"]["contentType"] == "audio/x-mulaw"
    assert sent["media"]["sampleRate"] == 8000
    assert len(base64.b64decode(sent["media"]["payload"])) == 160


async def test_barge_in_clears_and_checkpoints_carry_the_current_stream() -> None:
    serializer = VobizFrameSerializer("stream-1", "call-uuid")
    cleared = json.loads(await serializer.serialize(InterruptionFrame()))
    assert cleared == {"event": "clearAudio", "streamId": "stream-1"}
    # A reconnect: Vobiz sends a new start with a new streamId for the same call.
    restart = {"event": "start", "start": {"callId": "call-uuid", "streamId": "stream-2"}}
    assert await serializer.deserialize(json.dumps(restart)) is None
    frame = OutputTransportMessageFrame(message=serializer.checkpoint("turn-1"))
    checkpoint = json.loads(await serializer.serialize(frame))
    assert checkpoint == {"event": "checkpoint", "streamId": "stream-2", "name": "turn-1"}
    other_call = {"event": "start", "start": {"callId": "someone-else", "streamId": "x"}}
    await serializer.deserialize(json.dumps(other_call))
    assert serializer.stream_id == "stream-2"


async def test_media_dtmf_and_acks_in() -> None:
    serializer = VobizFrameSerializer("stream-1", "call-uuid")
    payload = base64.b64encode(b"\xff" * 160).decode()
    media = {"event": "media", "streamId": "stream-1", "media": {"payload": payload}}
    frame = await serializer.deserialize(json.dumps(media))
    assert isinstance(frame, InputAudioRawFrame)
    assert frame.sample_rate == 8000 and len(frame.audio) == 320
    dtmf = await serializer.deserialize(json.dumps({"event": "dtmf", "dtmf": {"digit": "5"}}))
    assert isinstance(dtmf, InputDTMFFrame) and dtmf.button.value == "5"
    played = {"event": "playedStream", "name": "turn-1"}
    assert await serializer.deserialize(json.dumps(played)) is None
    assert serializer.played == ["turn-1"]
    assert await serializer.deserialize("not json") is None
    assert await serializer.deserialize(json.dumps({"event": "clearedAudio"})) is None


async def test_a_checkpoint_follows_each_utterance_and_played_ones_are_recorded() -> None:
    serializer = VobizFrameSerializer("stream-1", "call-uuid")
    speech = Pipeline([FakeTTSService(), CheckpointAfterSpeech(serializer)])
    down, _ = await run_test(
        speech, frames_to_send=[TTSSpeakFrame("Hello there."), TTSSpeakFrame("Goodbye!")]
    )
    # Each checkpoint comes behind its utterance's audio, ahead of the next utterance.
    kinds = {TTSAudioRawFrame: "audio", TTSStoppedFrame: "end", OutputTransportMessageFrame: "cp"}
    order = [kinds[type(frame)] for frame in down if type(frame) in kinds]
    collapsed = [kind for i, kind in enumerate(order) if i == 0 or kind != order[i - 1]]
    assert collapsed == ["audio", "end", "cp", "audio", "end", "cp"]
    messages = [f for f in down if isinstance(f, OutputTransportMessageFrame)]
    sent = [json.loads(await serializer.serialize(frame)) for frame in messages]
    assert sent == [
        {"event": "checkpoint", "streamId": "stream-1", "name": "utterance-1"},
        {"event": "checkpoint", "streamId": "stream-1", "name": "utterance-2"},
    ]
    assert serializer.sent == ["utterance-1", "utterance-2"]
    await serializer.deserialize(json.dumps({"event": "playedStream", "name": "utterance-1"}))
    assert serializer.played == ["utterance-1"]
