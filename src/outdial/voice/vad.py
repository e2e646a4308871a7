"""Voice activity detection for many calls in one process: Pipecat's Silero analyzer, run
on the event loop with one ONNX session shared by every call.

Pipecat hands each 20 ms frame to a thread of the call's own (`run_in_executor`) and loads
a model per call. Silero scores a 32 ms window in about 0.1 ms, far less than the hand-off
costs, so the analysis runs inline. The ONNX session holds only the network (inference is
stateless and safe to share); each call keeps its own recurrent state and context in its
`SileroOnnxModel`, so calls never hear each other.

The loudness gate (`min_volume`) is measured only for windows Silero scores as speech: a
quiet window is not speech whatever its loudness, and the BS.1770 measurement over the
last 400 ms costs more than the model. Pipecat smooths the loudness from window to window;
after quiet windows the smoothing starts again from the measured loudness of the last
400 ms, which is itself an average.
"""

from __future__ import annotations

import functools
import warnings
from importlib import resources

import numpy as np

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from pipecat.audio.utils import exp_smoothing
    from pipecat.audio.vad.silero import SileroOnnxModel, SileroVADAnalyzer
    from pipecat.audio.vad.vad_analyzer import VADAnalyzer, VADParams, VADState

UNMEASURED = -1.0  # the loudness of a window Silero scored as quiet (never above a gate)


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


class CallVAD(SileroVADAnalyzer):
    """Silero for one call: inline, over the process's shared session."""

    def __init__(self, *, sample_rate: int, params: VADParams | None = None) -> None:
        VADAnalyzer.__init__(self, sample_rate=sample_rate, params=params)
        self._model = _model()
        self._windows_since_reset = 0
        self._low_confidence_windows = 0
        self._confidence = 0.0
        self._prev_volume = UNMEASURED

    async def analyze_audio(self, buffer: bytes) -> VADState:
        return self._run_analyzer(buffer)

    def voice_confidence(self, buffer: bytes) -> float:
        confidence = super().voice_confidence(buffer)
        self._confidence = float(np.asarray(confidence).item())
        return confidence

    def _get_smoothed_volume(self, audio: bytes) -> float:
        self._volume_tracker.update(audio, self.sample_rate)  # the window stays current
        if self._confidence < self._params.confidence:
            return UNMEASURED
        volume = self._volume_tracker.volume
        if self._prev_volume == UNMEASURED:
            return volume
        return exp_smoothing(volume, self._prev_volume, self._smoothing_factor)
