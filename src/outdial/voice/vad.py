"""Voice activity detection for many calls in one process: Pipecat's Silero analyzer, run
on the event loop with one ONNX session shared by every call, scoring the windows of all
the calls that have one ready at the same moment in one run.

Pipecat hands each 20 ms frame to a thread of the call's own (`run_in_executor`) and loads
a model per call. Silero scores a 32 ms window in about 0.1 ms, far less than the hand-off
costs, so the analysis runs on the event loop. The ONNX session holds only the network
(inference is stateless and safe to share); each call keeps its own recurrent state and
context in its `SileroOnnxModel`, so calls never hear each other.

A run of the network for eight windows costs about three runs of one (the fixed cost of
a run is most of it, more so on a busy process whose caches the calls' other work keeps
evicting), and Silero's batch dimension scores each row exactly as a run of its own would
(bit for bit; tested). So a call's window goes to `Scorer`, which runs the network once
for every window handed in before the event loop gets back to it: with one call that is
the next turn of the loop, as before; with many, one run serves all the calls whose
audio arrived together. A call's windows stay in order: it awaits each score before
handing in the next.

The loudness gate (`min_volume`) is measured only for windows Silero scores as speech: a
quiet window is not speech whatever its loudness, and the BS.1770 measurement over the
last 400 ms costs more than the model. Pipecat smooths the loudness from window to window;
after quiet windows the smoothing starts again from the measured loudness of the last
400 ms, which is itself an average.

And a window of silence is not scored at all: one whose every sample is within
`QUIET_PEAK` of zero (-60 dBFS) is quieter than the loudness gate lets through even at its
loudest (a square wave at that peak measures 0.53 against the gate's 0.6; tested), so
its confidence is 0 without running the network. A caller who is not talking sends such
windows most of a call on a quiet line (digital silence, or low line noise). The model
skips them as it skips nothing else: its recurrent state stays where the last scored
window left it and its context becomes the quiet window's last samples, which is what it
would be after scoring; Pipecat's periodic reset counts the window as quiet, as a scored
one would be. The one difference from scoring it: Pipecat could have counted a silent
window right after speech as speech (Silero's confidence lingers, and the gate measures
the last 400 ms); here it is quiet, so the end of speech starts counting one window
sooner.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import warnings
import weakref
from importlib import resources

import numpy as np

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop  # Pipecat's own way to μ-law and back (audioop-lts from Python 3.13)

    from pipecat.audio.utils import exp_smoothing
    from pipecat.audio.vad.silero import SileroOnnxModel, SileroVADAnalyzer
    from pipecat.audio.vad.vad_analyzer import VADAnalyzer, VADParams, VADState

log = logging.getLogger("outdial.voice")

UNMEASURED = -1.0  # the loudness of a window Silero scored as quiet (never above a gate)
QUIET_PEAK = 32  # 16-bit samples: a window within ±QUIET_PEAK is silence, never scored


@functools.cache
def _session() -> object:
    path = resources.files("pipecat.audio.vad.data").joinpath("silero_vad.onnx")
    return SileroOnnxModel(str(path), force_onnx_cpu=True).session


def _model() -> SileroOnnxModel:
    """A call's own model state over the shared session."""
    model = SileroOnnxModel.__new__(SileroOnnxModel)
    model.session = _session()
    model.sample_rates = [8000, 16000]
    model.reset_states()
    return model


def score(windows: list[tuple[SileroOnnxModel, bytes]], sample_rate: int) -> np.ndarray:
    """Each call's confidence for its next window (16-bit PCM), from one run of the shared
    network, moving each call's model past its window as `SileroOnnxModel.__call__` does for
    one: its context (the last samples it heard) before the window, its recurrent state in,
    the new state and context kept. A model fresh or reset (`reset_states`) has a state of
    zeros and no context yet: its context is zeros."""
    context = 64 if sample_rate == 16000 else 32
    inputs = np.empty((len(windows), context + len(windows[0][1]) // 2), np.float32)
    state = np.empty((2, len(windows), 128), np.float32)
    for row, (model, window) in enumerate(windows):
        inputs[row, :context] = model._context[0] if model._context.shape[1] else 0.0
        state[:, row] = model._state[:, 0]
        inputs[row, context:] = np.frombuffer(window, np.int16)
    inputs[:, context:] /= 32768.0
    rate = np.array(sample_rate, dtype=np.int64)
    scores, states = _session().run(None, {"input": inputs, "state": state, "sr": rate})
    for row, (model, _) in enumerate(windows):
        model._state = states[:, row : row + 1].copy()
        model._context = inputs[row : row + 1, -context:].copy()
        model._last_sr = sample_rate
        model._last_batch_size = 1
    return scores[:, 0]


GATHER = 0.005  # the longest a window waits for other calls' windows, in seconds
BATCH = 8  # windows that are run at once without waiting longer: more save little


class Scorer:
    """Scores the calls' windows in runs of the network that each serve many calls (one
    scorer per event loop and sample rate).

    With few calls a window is scored at the next turn of the event loop, as alone. Once
    the calls hand in enough windows that another is due within `GATHER` (about seven
    calls and more: a window is 32 ms of a call's audio), the first window of a run waits
    up to `GATHER` for others, and a run of `BATCH` goes at once. Measured on the media
    benchmark (docs/benchmarks.md): with 20 calls, runs of about 1.4 windows without the
    wait, and a sixth to a quarter of the process's CPU saved with it."""

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self._waiting: list[tuple[SileroOnnxModel, bytes, asyncio.Future[float]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._rate = 0.0  # windows per second handed in over the last second or so
        self._counted = 0
        self._since = 0.0
        self.runs = 0  # runs of the network, and windows scored: how well calls share one
        self.windows = 0

    def score(self, model: SileroOnnxModel, window: bytes) -> asyncio.Future[float]:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._waiting.append((model, window, future))
        if len(self._waiting) == BATCH:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            loop.call_soon(self._run)  # a run already due takes these along; this one is idle
        elif len(self._waiting) == 1:
            if self._rate * GATHER >= 1:
                self._timer = loop.call_later(GATHER, self._run)
            else:
                loop.call_soon(self._run)
        return future

    def _run(self) -> None:
        self._timer = None
        waiting, self._waiting = self._waiting, []
        if not waiting:
            return
        self._measure(len(waiting))
        self.runs += 1
        self.windows += len(waiting)
        try:
            scores = score([(model, window) for model, window, _ in waiting], self.sample_rate)
        except Exception:  # as Pipecat's analyzer does, a window that cannot be scored is quiet
            log.exception("voice activity detection failed for %d windows", len(waiting))
            scores = np.zeros(len(waiting), np.float32)
        for (*_, future), confidence in zip(waiting, scores, strict=True):
            if not future.done():
                future.set_result(float(confidence))

    def _measure(self, windows: int) -> None:
        now = asyncio.get_running_loop().time()
        self._counted += windows
        if now - self._since >= 1.0:
            self._rate = self._counted / (now - self._since) if self._since else 0.0
            self._counted, self._since = 0, now


_scorers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, Scorer]] = (
    weakref.WeakKeyDictionary()
)


def scorer(sample_rate: int) -> Scorer:
    """The running event loop's scorer for this sample rate."""
    by_rate = _scorers.setdefault(asyncio.get_running_loop(), {})
    if sample_rate not in by_rate:
        by_rate[sample_rate] = Scorer(sample_rate)
    return by_rate[sample_rate]


def silent(window: bytes) -> bool:
    """Every sample of a 16-bit window within ±QUIET_PEAK."""
    return audioop.max(window, 2) <= QUIET_PEAK


class CallVAD(SileroVADAnalyzer):
    """Silero for one call: on the event loop, over the process's shared session, each
    window scored together with the other calls' windows of the moment."""

    def __init__(self, *, sample_rate: int, params: VADParams | None = None) -> None:
        VADAnalyzer.__init__(self, sample_rate=sample_rate, params=params)
        self._model = _model()
        self._windows_since_reset = 0
        self._low_confidence_windows = 0
        self._confidence = 0.0
        self._scored: float | None = None
        self._prev_volume = UNMEASURED
        self._silence: bytes | None = None  # the last silent window, not yet heard by the model
        self._vad_state = VADState.QUIET  # (Pipecat sets it once it knows the sample rate)

    async def analyze_audio(self, buffer: bytes) -> VADState:
        """Pipecat's analysis, fed one window at a time: each window's score is awaited
        from the scorer first, and the analyzer then finds it ready (`voice_confidence`).
        The carriers' 20 ms frames never complete two windows of 32 ms, so this is
        Pipecat's analysis exactly; a longer frame is analysed window by window."""
        size = self._vad_frames_num_bytes
        state = self._vad_state
        while buffer:
            needed = size - len(self._vad_buffer)
            if len(buffer) < needed:
                return self._run_analyzer(buffer)
            head, buffer = buffer[:needed], buffer[needed:]
            window = self._vad_buffer + head
            if silent(window):
                self._silence, self._scored = window, 0.0
            else:
                self._heard_silence()
                self._scored = await scorer(self.sample_rate).score(self._model, window)
            state = self._run_analyzer(head)
        return state

    @property
    def quiet(self) -> bool:
        """No speech heard, none starting and none stopping."""
        return self._vad_state == VADState.QUIET

    def _heard_silence(self) -> None:
        """The model's context moves past the silent windows skipped since the last one
        scored (to the last samples of the last of them), its recurrent state stays.
        Done when the next window is scored: nothing reads it before."""
        if self._silence is not None:
            width = 64 if self.sample_rate == 16000 else 32
            tail = np.frombuffer(self._silence, np.int16)[-width:].astype(np.float32)
            self._model._context = (tail / 32768.0).reshape(1, width)
            self._silence = None

    def voice_confidence(self, buffer: bytes) -> float:
        if self._scored is None:  # called directly, not through analyze_audio
            self._heard_silence()
            self._scored = float(score([(self._model, buffer)], self.sample_rate)[0])
        confidence, self._scored = self._scored, None
        self._maybe_reset_model(confidence)
        if self._windows_since_reset == 0:  # reset: the model has forgotten the silence too
            self._silence = None
        self._confidence = confidence
        return confidence

    def _get_smoothed_volume(self, audio: bytes) -> float:
        self._volume_tracker.update(audio, self.sample_rate)  # the window stays current
        if self._confidence < self._params.confidence:
            return UNMEASURED
        volume = self._volume_tracker.volume
        if self._prev_volume == UNMEASURED:
            return volume
        return exp_smoothing(volume, self._prev_volume, self._smoothing_factor)
