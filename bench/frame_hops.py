"""Benchmark: CPU for one frame handed through a chain of Pipecat processors, in a call's
worker (`outdial.voice.pipeline.CallWorker`) and in Pipecat's default `PipelineWorker` with
the same settings.

A call's conversation is mostly frames handed from one processor to the next (the caller's
audio every 20 ms, the assistant's, the bot-speaking heartbeats), so what a hand-over costs
decides how many calls a process holds (bench/media.py measures that, with more noise). Here
a chain of pass-through processors carries N frames, queued 50 at a time; the figure is the
process's CPU per frame divided by the processors it passed, for a system frame (the caller's
audio: one queue per processor) and a data frame (the assistant's audio: two). Rounds
alternate between the workers; the median round is printed.

    .venv/bin/python -m bench.frame_hops [--processors 6] [--frames 20000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import warnings
from collections.abc import Callable

from bench.common import describe

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from pipecat.frames.frames import EndFrame, Frame, InputAudioRawFrame, OutputAudioRawFrame
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.pipeline.worker import PipelineParams, PipelineWorker
    from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
    from pipecat.workers.runner import WorkerRunner

from outdial.voice.fakes import SAMPLE_RATE
from outdial.voice.pipeline import CallWorker, _forward_pipecat_logs


class Pass(FrameProcessor):
    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)


class Count(FrameProcessor):
    """The chain's end: counts the frames of the kind measured, drops them."""

    def __init__(self, kind: type[Frame], expected: int) -> None:
        super().__init__()
        self.kind, self.expected, self.seen = kind, expected, 0
        self.done = asyncio.Event()

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, self.kind):
            self.seen += 1
            if self.seen == self.expected:
                self.done.set()
            return
        await self.push_frame(frame, direction)


def pipecat_default(pipeline: Pipeline) -> PipelineWorker:
    return PipelineWorker(
        pipeline,
        params=PipelineParams(audio_in_sample_rate=SAMPLE_RATE, audio_out_sample_rate=SAMPLE_RATE),
        enable_rtvi=False,
        enable_turn_tracking=False,
        idle_timeout_secs=None,
    )


WORKERS: dict[str, Callable[[Pipeline], PipelineWorker]] = {
    "call": CallWorker,
    "pipecat": pipecat_default,
}


def _frame(kind: type[Frame]) -> Frame:
    audio = b"\0" * (SAMPLE_RATE // 50 * 2)  # 20 ms of 16-bit PCM
    return kind(audio=audio, sample_rate=SAMPLE_RATE, num_channels=1)


async def one_round(make: Callable[[Pipeline], PipelineWorker], kind: type[Frame], args) -> float:
    """µs of CPU per frame per processor, for `args.frames` frames of `kind`."""
    first = Pass()
    end = Count(kind, args.frames)
    worker = make(Pipeline([first, *(Pass() for _ in range(args.processors - 2)), end]))
    runner = WorkerRunner(handle_sigint=False, handle_sigterm=False)
    await runner.add_workers(worker)
    running = asyncio.create_task(runner.run())
    await asyncio.sleep(0.2)
    started = time.process_time()
    for sent in range(args.frames):
        await first.queue_frame(_frame(kind))
        if sent % 50 == 49:
            await asyncio.sleep(0)
    await end.done.wait()
    spent = time.process_time() - started
    await worker.queue_frame(EndFrame())
    await running
    return spent / args.frames / args.processors * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--processors", type=int, default=6)
    parser.add_argument("--frames", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    _forward_pipecat_logs()
    print("\n".join(await describe(None)))
    print(f"{args.processors} processors, {args.frames} frames a round, {args.rounds} rounds")
    for kind, label in ((InputAudioRawFrame, "system"), (OutputAudioRawFrame, "data")):
        rounds: dict[str, list[float]] = {name: [] for name in WORKERS}
        for _ in range(args.rounds):
            for name, make in WORKERS.items():
                rounds[name].append(await one_round(make, kind, args))
        figures = "  ".join(
            f"{name} {statistics.median(values):5.1f} µs" for name, values in rounds.items()
        )
        print(f"  {label} frame ({kind.__name__}), per processor: {figures}")


if __name__ == "__main__":
    asyncio.run(main())
