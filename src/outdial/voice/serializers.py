"""The frame serializer for each provider's media stream (μ-law, 8 kHz both ways), and the
checkpoints a Vobiz stream sends behind each utterance."""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # audioop, inside Pipecat
    from pipecat.processors.frame_processor import FrameProcessor
    from pipecat.serializers.base_serializer import FrameSerializer
    from pipecat.serializers.twilio import TwilioFrameSerializer

from outdial.voice.vobiz_serializer import CheckpointAfterSpeech, VobizFrameSerializer


def twilio_serializer(stream_sid: str, call_sid: str) -> TwilioFrameSerializer:
    """Pipecat's Twilio serializer. It does not hang up by itself: a call ends through the
    dialer's adapter (which knows the number's credentials) or when the caller goes away."""
    return TwilioFrameSerializer(
        stream_sid,
        call_sid=call_sid or None,
        params=TwilioFrameSerializer.InputParams(auto_hang_up=False),
    )


def vobiz_serializer(stream_id: str, call_id: str) -> VobizFrameSerializer:
    return VobizFrameSerializer(stream_id, call_id)


def outbound_chunks(serializer: FrameSerializer) -> int:
    """How much of the assistant's audio each message to the carrier carries, in 10 ms
    (Pipecat's `audio_out_10ms_chunks`; its default is 4). Every message is a hand-over to
    the output transport's sender, a conversion and a WebSocket send, whatever its length,
    so fewer, longer messages cost less (docs/voice.md, "The pipeline"). Vobiz asks for
    chunks of 20 to 60 ms: 60. Twilio plays what it is sent from a buffer and names no
    size for a message: 80."""
    return 6 if isinstance(serializer, VobizFrameSerializer) else 8


def after_speech(serializer: FrameSerializer) -> list[FrameProcessor]:
    """What follows the TTS in a call's pipeline for this stream: on Vobiz,
    `CheckpointAfterSpeech`, so a checkpoint goes out behind each utterance's audio."""
    if isinstance(serializer, VobizFrameSerializer):
        return [CheckpointAfterSpeech(serializer)]
    return []
