"""Pipecat's `FrameProcessor.push_frame` (1.14) without the work a call never uses.

Every frame a processor hands to its neighbour goes through `push_frame`, which calls the
processor's `on_before_push_frame` and `on_after_push_frame` event handlers and then
`__internal_push_frame`, which starts with `logger.trace(f"Pushing {frame} downstream from
{self} to {self._next}")`. The f-string is built whatever the log level (outdial keeps
Pipecat's WARNING and worse, `pipeline._forward_pipecat_logs`): an audio frame's `__str__`
formats its timestamp, size and rate, and each processor's its name, on every hand-over.
In a profile of a media process at 35 calls the two trace lines were 3.0 % of the samples
and the two event-handler calls 0.8 % (each an awaited coroutine that finds no handler), of
an event loop that was 57.5 % (docs/benchmarks.md, "Media sessions").

`push_frame` here does what Pipecat's does, in the same order: the handlers run when
something registered one (nothing in outdial does), the observer sees the hand-over with
the time it was made, the neighbour queues the frame, and an exception on the way becomes
the processor's error. Only the trace lines are gone, and the clock is read only for an
observer (a call's worker has none: `pipeline.CallWorker`). `install()` puts it on
`FrameProcessor` itself, so that Pipecat's processors (their own `push_frame`s call it
through `super()`) use it too.
"""

from __future__ import annotations

import warnings
from typing import Any

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from pipecat.frames.frames import Frame
    from pipecat.observers.base_observer import FramePushed
    from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
    from pipecat.utils.errors import ErrorCategory

BEFORE = "on_before_push_frame"
AFTER = "on_after_push_frame"


async def push_frame(
    self: FrameProcessor, frame: Frame, direction: FrameDirection = FrameDirection.DOWNSTREAM
) -> None:
    """Hand `frame` to the next processor (downstream) or the previous one (upstream)."""
    handlers = self._event_handlers
    before, after = handlers.get(BEFORE), handlers.get(AFTER)
    if before is None or before.handlers:  # (an unregistered event: Pipecat's own answer)
        await self._call_event_handler(BEFORE, frame)
    setup: Any = self._setup
    # (read past FrameProcessorSetup's __getattribute__, which only watches another field)
    observer = object.__getattribute__(setup, "observer") if setup else None
    try:
        if direction == FrameDirection.DOWNSTREAM:
            neighbour = self._next
        elif direction == FrameDirection.UPSTREAM:
            neighbour = self._prev
        else:
            neighbour = None
        if neighbour:
            if observer:  # (Pipecat reads the clock for every push, observed or not)
                timestamp = self.get_clock().get_time()
                await observer.on_push_frame(
                    FramePushed(
                        source=self,
                        destination=neighbour,
                        frame=frame,
                        direction=direction,
                        timestamp=timestamp,
                    )
                )
            await neighbour.queue_frame(frame, direction)
    except Exception as e:
        await self.push_error(
            error_msg=f"Uncaught exception: {e}", exception=e, category=ErrorCategory.UNKNOWN
        )
    if after is None or after.handlers:
        await self._call_event_handler(AFTER, frame)


def install() -> None:
    """Use `push_frame` for every processor in this process (idempotent)."""
    FrameProcessor.push_frame = push_frame  # type: ignore[method-assign]
