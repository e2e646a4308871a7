"""The offline speech codec: text survives any cutting of the stream, and μ-law round trips."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from outdial.voice import fake_speech


@given(
    lines=st.lists(st.text(max_size=400), min_size=1, max_size=4),
    cuts=st.lists(st.integers(min_value=1, max_value=400), max_size=30),
    noise=st.binary(max_size=50),
)
def test_utterances_survive_any_chunking(lines: list[str], cuts: list[int], noise: bytes) -> None:
    stream = noise.replace(b"~", b"")
    for line in lines:
        stream += b"".join(fake_speech.encode(line)) + fake_speech.silence(0.1)
    decoder, heard, at = fake_speech.Decoder(), [], 0
    for cut in cuts:
        heard += decoder.feed(stream[at : at + cut])
        at += cut
    heard += decoder.feed(stream[at:])
    assert heard == lines


@given(st.text(max_size=1000))
def test_frames_are_whole_and_printable(text: str) -> None:
    frames = fake_speech.encode(text)
    assert all(len(frame) == fake_speech.FRAME_BYTES for frame in frames)
    # Printable ASCII only: μ-law → PCM → μ-law gives every such byte back unchanged.
    assert all(0x20 <= byte <= 0x7E for frame in frames for byte in frame)


def test_silence_is_whole_frames() -> None:
    assert fake_speech.silence(0.1) == fake_speech.SILENCE_FRAME * 5
    assert fake_speech.decode_all(fake_speech.silence(1.0)) == []
