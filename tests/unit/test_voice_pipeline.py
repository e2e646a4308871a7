"""The call's pipeline worker: its processors report frames only when someone observes."""

from __future__ import annotations

import asyncio
import warnings

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from pipecat.frames.frames import EndFrame, Frame, TextFrame
    from pipecat.observers.base_observer import BaseObserver, FramePushed
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
    from pipecat.workers.runner import WorkerRunner

from outdial.voice.pipeline import CallWorker

pytestmark = pytest.mark.asyncio


class Probe(FrameProcessor):
    """Passes frames on, noting the text frames and whether it had an observer to tell."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []
        self.observed: list[bool] = []

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, TextFrame):
            self.texts.append(frame.text)
            self.observed.append(bool(self.processor_setup.observer))
        await self.push_frame(frame, direction)


class Pushes(BaseObserver):
    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []

    async def on_push_frame(self, data: FramePushed) -> None:
        if isinstance(data.frame, TextFrame):
            self.texts.append(data.frame.text)


async def _run(worker: CallWorker, *frames: Frame) -> None:
    runner = WorkerRunner(handle_sigint=False, handle_sigterm=False)
    await runner.add_workers(worker)
    await worker.queue_frames([*frames, EndFrame()])
    await asyncio.wait_for(runner.run(), timeout=10)


async def test_with_no_observer_the_processors_report_nothing() -> None:
    first, second = Probe(), Probe()
    await _run(CallWorker(Pipeline([first, second])), TextFrame("hello"), TextFrame("again"))
    assert first.texts == second.texts == ["hello", "again"]
    assert first.observed == second.observed == [False, False]


async def test_an_observer_added_is_told_every_push() -> None:
    first, second = Probe(), Probe()
    worker = CallWorker(Pipeline([first, second]))
    pushes = Pushes()
    worker.add_observer(pushes)
    await _run(worker, TextFrame("hello"))
    assert first.observed == second.observed == [True]
    # pushed by the worker's source, by each probe and by the pipeline into its sink
    assert pushes.texts.count("hello") >= 2
