"""The calls' voice activity detection: one shared Silero session, each call's own state,
the same scores as Pipecat's analyzer, and the loudness measured only for speech."""

from __future__ import annotations

import warnings

import numpy as np

from outdial.voice import vad

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from pipecat.audio.vad.silero import SileroVADAnalyzer

RATE = 8000
WINDOW = 256  # samples Silero scores at 8 kHz


def windows(seed: int, count: int) -> list[bytes]:
    """Noise and tones, different per seed, as 16-bit PCM windows."""
    rng = np.random.default_rng(seed)
    t = np.arange(WINDOW * count) / RATE
    signal = 0.3 * np.sin(2 * np.pi * (150 + 50 * seed) * t) + rng.normal(0, 0.05, t.size)
    pcm = (np.clip(signal, -1, 1) * 32767).astype(np.int16).tobytes()
    return [pcm[i : i + 2 * WINDOW] for i in range(0, len(pcm), 2 * WINDOW)]


def score(analyzer: SileroVADAnalyzer, window: bytes) -> float:
    return float(np.asarray(analyzer.voice_confidence(window)).item())


def test_calls_share_the_network_and_keep_their_own_state() -> None:
    first, second = vad.CallVAD(sample_rate=RATE), vad.CallVAD(sample_rate=RATE)
    assert first._model.session is second._model.session
    reference = [SileroVADAnalyzer(sample_rate=RATE) for _ in range(2)]
    for analyzer in (first, second, *reference):
        analyzer.set_sample_rate(RATE)
    audio = [windows(1, 40), windows(2, 40)]
    # The two calls interleaved score exactly what two separate Pipecat analyzers score.
    for one, two in zip(*audio, strict=True):
        assert score(first, one) == score(reference[0], one)
        assert score(second, two) == score(reference[1], two)


def test_loudness_is_measured_only_for_speech() -> None:
    analyzer = vad.CallVAD(sample_rate=RATE)
    analyzer.set_sample_rate(RATE)
    loud = windows(3, 20)
    analyzer._confidence = 0.0  # Silero: quiet
    for window in loud:
        assert analyzer._get_smoothed_volume(window) == vad.UNMEASURED
    # The window kept up meanwhile: the first speech window measures the last 400 ms.
    analyzer._prev_volume = vad.UNMEASURED
    analyzer._confidence = 1.0
    measured = analyzer._get_smoothed_volume(loud[-1])
    reference = SileroVADAnalyzer(sample_rate=RATE)
    reference.set_sample_rate(RATE)
    for window in [*loud, loud[-1]]:
        reference._volume_tracker.update(window, RATE)
    assert measured == reference._volume_tracker.volume > 0
    # Then smoothed from window to window, as Pipecat does: a quieter window lowers it by
    # only a fifth of the way.
    analyzer._prev_volume = measured
    quieter = (np.frombuffer(b"".join(loud), np.int16) // 8).astype(np.int16).tobytes()
    reference._volume_tracker.update(quieter, RATE)
    smoothed = analyzer._get_smoothed_volume(quieter)
    target = reference._volume_tracker.volume
    assert target < smoothed < measured
    assert abs(smoothed - (measured + 0.2 * (target - measured))) < 1e-9
