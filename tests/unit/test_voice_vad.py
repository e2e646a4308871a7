"""The calls' voice activity detection: one shared Silero session, each call's own state,
the same scores as Pipecat's analyzer whether a window is scored alone or with other
calls' windows, the loudness measured only for speech, and silence never scored."""

from __future__ import annotations

import asyncio
import itertools
import warnings

import numpy as np

from outdial.voice import vad

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from pipecat.audio.utils import calculate_audio_volume
    from pipecat.audio.vad.silero import SileroVADAnalyzer
    from pipecat.audio.vad.vad_analyzer import VADParams, VADState

RATE = 8000
WINDOW = 256  # samples Silero scores at 8 kHz


def audio(seed: int, count: int, loudness: float = 0.3) -> bytes:
    """Noise and a tone, different per seed, as 16-bit PCM: `count` windows of it."""
    rng = np.random.default_rng(seed)
    t = np.arange(WINDOW * count) / RATE
    signal = loudness * np.sin(2 * np.pi * (150 + 50 * seed) * t) + rng.normal(0, 0.05, t.size)
    return (np.clip(signal, -1, 1) * 32767).astype(np.int16).tobytes()


def windows(seed: int, count: int) -> list[bytes]:
    pcm = audio(seed, count)
    return [pcm[i : i + 2 * WINDOW] for i in range(0, len(pcm), 2 * WINDOW)]


def frames(seed: int) -> list[bytes]:
    """A call's inbound audio in 20 ms frames: a second of a tone, then 2.5 s of quieter
    noise (long enough for the model's periodic reset), then the tone again."""
    pcm = audio(seed, 31) + audio(seed + 10, 80, loudness=0.0) + audio(seed, 31)
    return [pcm[i : i + 320] for i in range(0, len(pcm), 320)]


def score(analyzer: SileroVADAnalyzer, window: bytes) -> float:
    return float(np.asarray(analyzer.voice_confidence(window)).item())


def test_calls_share_the_network_and_keep_their_own_state() -> None:
    first, second = vad.CallVAD(sample_rate=RATE), vad.CallVAD(sample_rate=RATE)
    assert first._model.session is second._model.session
    reference = [SileroVADAnalyzer(sample_rate=RATE) for _ in range(2)]
    for analyzer in (first, second, *reference):
        analyzer.set_sample_rate(RATE)
    audio = [windows(1, 40), windows(2, 40)]
    # The two calls interleaved score exactly what two separate Pipecat analyzers score,
    # through a quiet stretch long enough for both to reset their model.
    quiet = [(np.frombuffer(w, np.int16) // 64).astype(np.int16).tobytes() for w in windows(9, 90)]
    for one, two in zip(audio[0] + quiet, audio[1] + quiet, strict=True):
        assert score(first, one) == score(reference[0], one)
        assert score(second, two) == score(reference[1], two)
    assert 0 < first._windows_since_reset < 90 and 0 < second._windows_since_reset < 90


async def test_calls_scored_together_hear_what_each_would_alone() -> None:
    """Five calls' frames arriving together are scored in one run of the network per
    window, and each call's analysis (states and scores, window by window) is exactly
    what it is when the call is the only one."""

    async def follow(together: bool) -> list[list[tuple]]:
        calls = [(vad.CallVAD(sample_rate=RATE), frames(seed)) for seed in range(5)]
        for analyzer, _ in calls:
            analyzer.set_sample_rate(RATE)
        heard: list[list[tuple]] = [[] for _ in calls]
        for step in range(len(calls[0][1])):
            if together:
                states = await asyncio.gather(*(a.analyze_audio(pcm[step]) for a, pcm in calls))
            else:
                states = [await a.analyze_audio(pcm[step]) for a, pcm in calls]
            for seen, (analyzer, _), state in zip(heard, calls, states, strict=True):
                seen.append((state, analyzer._confidence, analyzer._windows_since_reset))
        return heard

    scorer = vad.scorer(RATE)  # the event loop's: earlier tests on this loop may have used it
    runs, scored = scorer.runs, scorer.windows
    alone = await follow(together=False)
    windows_alone = scorer.windows - scored
    assert scorer.runs - runs == windows_alone  # one at a time: a run per window
    runs, scored = scorer.runs, scorer.windows
    together = await follow(together=True)
    assert scorer.windows - scored == windows_alone
    assert scorer.runs - runs == windows_alone // 5  # every window scored with the other four
    assert together == alone
    states = {state for call in alone for state, *_ in call}
    assert {VADState.SPEAKING, VADState.QUIET} <= states  # the audio moved the analysis
    assert any(
        since < before for call in alone for (*_, before), (*_, since) in itertools.pairwise(call)
    )


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


async def test_a_busy_scorer_waits_briefly_for_more_calls_and_a_quiet_one_does_not() -> None:
    scorer = vad.Scorer(RATE)
    calls = [vad._model() for _ in range(vad.BATCH)]
    window = windows(4, 1)[0]

    async def hand_in(models: list) -> list[float]:
        """One window per call, each on its own turn of the event loop."""
        scores = []
        for model in models:
            scores.append(scorer.score(model, window))
            await asyncio.sleep(0)
        return list(await asyncio.gather(*scores))

    await hand_in(calls[:3])
    assert (scorer.runs, scorer.windows) == (3, 3)  # few windows a second: each alone

    scorer._rate = 1.5 / vad.GATHER  # more than one window due within the wait
    started = asyncio.get_running_loop().time()
    await hand_in(calls[:3])
    assert (scorer.runs, scorer.windows) == (4, 6)  # one run for the three
    assert asyncio.get_running_loop().time() - started >= vad.GATHER * 0.9

    full = [scorer.score(model, window) for model in calls[: vad.BATCH]]
    await asyncio.sleep(0)  # a full run goes at the next turn, without waiting
    assert scorer.runs == 5 and all(future.done() for future in full)


async def test_the_scorer_learns_how_busy_it_is() -> None:
    scorer, model, window = vad.Scorer(RATE), vad._model(), windows(5, 1)[0]
    loop = asyncio.get_running_loop()
    started = loop.time()
    while loop.time() - started < 1.2:
        # A run of BATCH windows every few ms (thousands a second; the threshold is 200,
        # so a busy machine's slower turns still clear it).
        await asyncio.gather(*(scorer.score(model, window) for _ in range(vad.BATCH)))
        await asyncio.sleep(0.001)
    assert scorer._rate * vad.GATHER >= 1  # from now on a window waits for others


def test_silence_is_quiet_without_the_network() -> None:
    """Windows within ±QUIET_PEAK never reach the network: they are quiet, Pipecat's
    periodic reset counts them, and the model meets the audio after them as that reset
    left it, its context moved past the silence as scoring would have moved it."""

    async def listen() -> None:
        analyzer = vad.CallVAD(sample_rate=RATE)
        analyzer.set_sample_rate(RATE)
        scorer = vad.scorer(RATE)
        line = np.random.default_rng(7).integers(-vad.QUIET_PEAK, vad.QUIET_PEAK + 1, 94 * WINDOW)
        quiet = [w.astype(np.int16).tobytes() for w in np.split(line, 94)]  # 3 s of a line
        scored = scorer.windows
        states = [await analyzer.analyze_audio(window) for window in quiet]
        assert scorer.windows == scored  # not one window scored
        assert set(states) == {VADState.QUIET} and analyzer._confidence == 0.0
        assert 0 < analyzer._windows_since_reset < len(quiet)  # reset on Pipecat's schedule

        fresh = SileroVADAnalyzer(sample_rate=RATE)  # reset, having heard the last window
        fresh.set_sample_rate(RATE)
        tail = np.frombuffer(quiet[-1], np.int16)[-32:].astype(np.float32) / 32768.0
        fresh._model._context = tail.reshape(1, 32)
        fresh._model._last_sr, fresh._model._last_batch_size = RATE, 1
        for window in windows(2, 5):
            await analyzer.analyze_audio(window)
            assert analyzer._confidence == score(fresh, window) > 0
        assert scorer.windows == scored + 5

    asyncio.run(listen())


def test_the_silence_floor_is_under_the_loudness_gate() -> None:
    """The loudest audio within ±QUIET_PEAK (a square wave at that peak, at any pitch)
    measures below Pipecat's loudness gate, so no silent window could have been speech
    by its own loudness; one sample past the floor is scored."""
    gate = VADParams().min_volume
    t = np.arange(3200) / RATE  # the 400 ms Pipecat measures
    for pitch in (50, 300, 1000, 2000, 3000, 3900):
        wave = np.where(np.sin(2 * np.pi * pitch * t + 0.1) >= 0, 1, -1) * vad.QUIET_PEAK
        pcm = wave.astype(np.int16).tobytes()
        assert calculate_audio_volume(pcm, RATE) < gate - 0.05
        assert vad.silent(pcm[: 2 * WINDOW])
    louder = np.zeros(WINDOW, np.int16)
    louder[100] = -vad.QUIET_PEAK - 1
    assert not vad.silent(louder.tobytes())
