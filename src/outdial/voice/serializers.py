"""The frame serializer for each provider's media stream (μ-law, 8 kHz both ways)."""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # audioop, inside Pipecat
    from pipecat.serializers.twilio import TwilioFrameSerializer

from outdial.voice.vobiz_serializer import VobizFrameSerializer


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
