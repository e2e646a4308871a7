"""Offline "speech": text carried inside μ-law audio, so fakes can talk over a real stream.

The simulated caller and the fake TTS speak by sending 20 ms μ-law frames (160 bytes at
8 kHz) that carry their words; the fake STT and the simulated caller's ear recognise them.
A speaking frame is

    MAGIC (6 bytes "~ODV1~") | flag (1 byte: "+" more follows, "." last) | text chunk | padding

where the chunk is the utterance's UTF-8 text in URL-safe base64, at most 153 bytes per
frame, and padding is spaces up to 160 bytes. Every byte is printable ASCII (0x20..0x7E),
so the frames survive the μ-law → 16-bit PCM → μ-law round trip that Pipecat's serializers
make (only 0x7F, μ-law's "negative zero", would not). Silence is 0xFF.

This module imports nothing of Pipecat: the carrier simulator uses it too.
"""

from __future__ import annotations

import base64

FRAME_BYTES = 160  # 20 ms of μ-law at 8 kHz
FRAME_SECONDS = 0.02
MAGIC = b"~ODV1~"
MORE, LAST = b"+", b"."
CHUNK = FRAME_BYTES - len(MAGIC) - 1
SILENCE_BYTE = 0xFF
SILENCE_FRAME = bytes([SILENCE_BYTE]) * FRAME_BYTES


def encode(text: str) -> list[bytes]:
    """The speaking frames that carry `text` (at least one frame, even for "")."""
    body = base64.urlsafe_b64encode(text.encode("utf-8"))
    chunks = [body[i : i + CHUNK] for i in range(0, len(body), CHUNK)] or [b""]
    frames = []
    for index, chunk in enumerate(chunks):
        flag = LAST if index == len(chunks) - 1 else MORE
        frames.append((MAGIC + flag + chunk).ljust(FRAME_BYTES, b" "))
    return frames


def silence(seconds: float) -> bytes:
    """μ-law silence lasting `seconds` (whole 20 ms frames)."""
    return SILENCE_FRAME * max(0, round(seconds / FRAME_SECONDS))


class Decoder:
    """Finds utterances in a μ-law byte stream, however it was cut into messages."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._parts: list[bytes] = []

    def feed(self, ulaw: bytes) -> list[str]:
        """Add audio; the utterances completed by it, in order."""
        self._buffer.extend(ulaw)
        done: list[str] = []
        while True:
            start = self._buffer.find(MAGIC)
            if start < 0:
                # Keep a tail that might hold the start of the next magic.
                del self._buffer[: max(0, len(self._buffer) - len(MAGIC) + 1)]
                return done
            if len(self._buffer) - start < FRAME_BYTES:
                del self._buffer[:start]
                return done
            frame = bytes(self._buffer[start : start + FRAME_BYTES])
            del self._buffer[: start + FRAME_BYTES]
            flag = frame[len(MAGIC) : len(MAGIC) + 1]
            self._parts.append(frame[len(MAGIC) + 1 :].rstrip(b" "))
            if flag == LAST:
                body, self._parts = b"".join(self._parts), []
                try:
                    done.append(base64.urlsafe_b64decode(body).decode("utf-8"))
                except ValueError:
                    continue  # a damaged utterance is not heard, as with real speech


def decode_all(ulaw: bytes) -> list[str]:
    return Decoder().feed(ulaw)
