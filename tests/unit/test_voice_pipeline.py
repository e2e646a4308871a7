"""Pieces of the call's pipeline on their own: the worker (its processors report frames only
when someone observes), the waits of the assistant's audio on its way out (a queued chunk
goes on in the same turn of the event loop; the timeouts still fire), the sender without
bot-speaking heartbeats, the caller's silence held while it can wait (not in a recorded
call), frames handed on without Pipecat's trace lines (`voice/frame_push.py`: in order both
ways, handlers and errors as Pipecat has them), and `pipeline.build` putting these pieces
in."""

from __future__ import annotations

import asyncio
import struct
import warnings

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from pipecat.audio.vad.vad_analyzer import VADState
    from pipecat.frames.frames import (
        BotSpeakingFrame,
        BotStartedSpeakingFrame,
        EndFrame,
        ErrorFrame,
        Frame,
        InputAudioRawFrame,
        OutputAudioRawFrame,
        TextFrame,
        TTSAudioRawFrame,
    )
    from pipecat.observers.base_observer import BaseObserver, FramePushed
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
    from pipecat.transports.base_output import BaseOutputTransport
    from pipecat.transports.base_transport import TransportParams
    from pipecat.utils.frame_queue import FrameQueue
    from pipecat.workers.runner import WorkerRunner

from outdial.config import Settings
from outdial.voice import frame_push, pipeline, vad
from outdial.voice.config import CallContext, resolve
from outdial.voice.pipeline import CallAudioContexts, CallMediaSender, CallOutput, CallWorker
from outdial.voice.providers import services_for
from outdial.voice.recorder import Recorder
from outdial.voice.serializers import twilio_serializer

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
        self.times: list[int] = []

    async def on_push_frame(self, data: FramePushed) -> None:
        if isinstance(data.frame, TextFrame):
            self.texts.append(data.frame.text)
            self.times.append(data.timestamp)


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
    assert all(time > 0 for time in pushes.times)  # the worker's clock at each push


async def _turns_while(awaitable) -> tuple[object, int]:
    """What `awaitable` gives, and how many turns of the event loop passed meanwhile."""
    turns = 0
    ticking = True

    def tick() -> None:
        nonlocal turns
        if ticking:
            turns += 1
            asyncio.get_running_loop().call_soon(tick)

    asyncio.get_running_loop().call_soon(tick)
    result = await awaitable
    ticking = False
    return result, turns


def _audio(kind: type[OutputAudioRawFrame] = OutputAudioRawFrame) -> OutputAudioRawFrame:
    return kind(audio=b"\0" * 320, sample_rate=8000, num_channels=1)


class Transport:
    """What a media sender asks of its transport, for the write's timeout."""

    def __init__(self, write_seconds: float) -> None:
        self.write_seconds = write_seconds
        self.is_usable = True
        self.written: list[OutputAudioRawFrame] = []
        self.errors: list[tuple[str, bool]] = []
        self.pushed: list[type[Frame]] = []

    async def write_audio_frame(self, frame: OutputAudioRawFrame) -> bool:
        await asyncio.sleep(self.write_seconds)
        self.written.append(frame)
        return True

    async def push_error(self, message: str, *, exception, force_treat_as_permanent) -> None:
        self.errors.append((message, force_treat_as_permanent))

    async def push_frame(self, frame: Frame, direction=FrameDirection.DOWNSTREAM) -> None:
        self.pushed.append(type(frame))

    async def broadcast_frame(self, kind: type[Frame], **fields) -> None:
        self.pushed += [kind, kind]


class Sender(CallMediaSender):
    stopped = 0

    async def _bot_stopped_speaking(self) -> None:
        self.stopped += 1


def _sender(transport: Transport, write_timeout: float = 1.0, kind=Sender) -> Sender:
    params = TransportParams(audio_out_enabled=True, audio_out_write_timeout_secs=write_timeout)
    sender = kind(
        transport, destination=None, sample_rate=8000, audio_chunk_size=320, params=params
    )
    sender._audio_queue = FrameQueue()  # made by `start`, with the sender's task
    return sender


async def test_a_queued_chunk_is_taken_and_written_in_the_same_turn() -> None:
    transport = Transport(write_seconds=0)
    sender = _sender(transport)
    frames = sender._queued(1.0)
    chunks = [_audio(), _audio()]
    for chunk in chunks:
        await sender._audio_queue.put(chunk)
    taken, turns = await _turns_while(frames.__anext__())
    assert taken is chunks[0] and turns == 0
    taken, turns = await _turns_while(frames.__anext__())
    assert taken is chunks[1] and turns == 0
    # the write's own wait (the transport's playback sleep, here none) is all it yields for
    written, turns = await _turns_while(sender._internal_write_audio_frame(chunks[0]))
    assert written is True and transport.written == [chunks[0]] and turns <= 1
    await frames.aclose()


async def test_no_audio_for_the_fallback_time_means_the_bot_stopped() -> None:
    sender = _sender(Transport(write_seconds=0))
    frames = sender._queued(0.05)
    waiting = asyncio.ensure_future(frames.__anext__())
    await asyncio.sleep(0.18)
    assert sender.stopped >= 2 and not waiting.done()
    chunk = _audio()
    await sender._audio_queue.put(chunk)
    assert await waiting is chunk
    await frames.aclose()


async def test_a_write_that_never_returns_is_given_up_with_an_error() -> None:
    transport = Transport(write_seconds=60)
    sender = _sender(transport, write_timeout=0.05)
    assert await asyncio.wait_for(sender._internal_write_audio_frame(_audio()), 5) is False
    assert transport.written == []
    assert len(transport.errors) == 1 and transport.errors[0][1] is True
    assert "stopped reading" in transport.errors[0][0]


async def test_speech_starts_the_bot_speaking_without_heartbeats() -> None:
    """Pipecat's sender, given the same speech, sends the heartbeat the call's does not."""
    ours, pipecats = Transport(write_seconds=0), Transport(write_seconds=0)
    senders = [_sender(ours), _sender(pipecats, kind=BaseOutputTransport.MediaSender)]
    for _ in range(3):
        for sender in senders:
            await sender._handle_frame(_audio(TTSAudioRawFrame))
        await asyncio.sleep(0.21)  # longer than Pipecat's heartbeat period
    assert ours.pushed == [BotStartedSpeakingFrame, BotStartedSpeakingFrame]
    assert pipecats.pushed.count(BotStartedSpeakingFrame) == 2
    assert pipecats.pushed.count(BotSpeakingFrame) == 6


async def test_a_tts_audio_context_gives_its_items_in_order_skipping_keepalives() -> None:
    contexts = CallAudioContexts()
    await contexts.create("reply")
    first, second = _audio(TTSAudioRawFrame), _audio(TTSAudioRawFrame)
    await contexts.append("reply", first)
    contexts.keepalive("reply")
    await contexts.append("reply", second)
    await contexts.append("reply", None)
    taken, turns = await _turns_while(contexts.get("reply", timeout=1.0))
    assert taken is first and turns == 0
    assert await contexts.get("reply", timeout=1.0) is second
    assert await contexts.get("reply", timeout=1.0) is None


async def test_a_quiet_tts_audio_context_times_out() -> None:
    contexts = CallAudioContexts()
    await contexts.create("reply")
    with pytest.raises(TimeoutError):
        await contexts.get("reply", timeout=0.05)
    # a keepalive restarts the wait: an item due after the first timeout is still given
    later = _audio(TTSAudioRawFrame)
    loop = asyncio.get_running_loop()
    loop.call_later(0.3, contexts.keepalive, "reply")
    loop.call_later(0.6, contexts._contexts["reply"].put_nowait, later)
    assert await contexts.get("reply", timeout=0.5) is later


async def test_a_calls_pipeline_is_built_with_these_pieces() -> None:
    """The conversation tests run them; this says they are the ones a call is built with."""
    config = resolve(
        CallContext(
            assistant={"system_instruction": "Be brief.", "first_message": "Hello."},
            phone_number="+14155550100",
        )
    )
    services = services_for(Settings(voice_services="fake"), config)
    websocket = object()  # nothing is read or sent while the pipeline is only built
    conversing = pipeline.build(websocket, twilio_serializer("MZ0", "CA0"), config, services)  # type: ignore[arg-type]
    assert isinstance(conversing.worker, CallWorker)
    assert isinstance(services.tts._audio_context_manager, CallAudioContexts)
    assert sum(isinstance(p, CallOutput) for p in _processors(conversing.worker)) == 1


def _processors(worker: CallWorker) -> list[FrameProcessor]:
    found: list[FrameProcessor] = []
    todo: list[FrameProcessor] = [worker._pipeline]
    while todo:
        processor = todo.pop()
        found.append(processor)
        todo.extend(getattr(processor, "processors", []))
    return found


async def test_silence_that_can_wait_goes_on_hold_frames_at_a_time() -> None:
    """While no user turn is open and the VAD is quiet, the caller's silent frames are
    handed on HOLD_FRAMES at a time as one frame of the same audio, in order; a frame with
    sound goes on at once, the silence held before it first; an open turn or a VAD that
    hears something hands every frame on as it comes."""
    config = resolve(
        CallContext(assistant={"system_instruction": "Be brief."}, phone_number="+14155550100")
    )
    services = services_for(Settings(voice_services="fake"), config)
    conversing = pipeline.build(object(), twilio_serializer("MZ0", "CA0"), config, services)  # type: ignore[arg-type]
    (source,) = [p for p in _processors(conversing.worker) if isinstance(p, pipeline.CallInput)]
    pushed: list[bytes] = []

    async def push_frame(
        frame: Frame, direction: FrameDirection = FrameDirection.DOWNSTREAM
    ) -> None:
        assert isinstance(frame, InputAudioRawFrame) and frame.sample_rate == 8000
        pushed.append(frame.audio)

    source.push_frame = push_frame  # type: ignore[method-assign]
    line = source.can_wait
    assert isinstance(line, pipeline.QuietLine)

    def frame(level: int, number: int) -> InputAudioRawFrame:
        samples = [level if i % 2 else -level for i in range(160)]
        samples[0], samples[2] = divmod(number, vad.QUIET_PEAK)  # told apart, still silent
        return InputAudioRawFrame(struct.pack("<160h", *samples), 8000, 1)

    hold = pipeline.HOLD_FRAMES
    silence = [frame(vad.QUIET_PEAK, n) for n in range(2 * hold + 2)]
    for each in silence:
        await source.push_audio_frame(each)
    assert pushed == [
        b"".join(f.audio for f in silence[:hold]),
        b"".join(f.audio for f in silence[hold : 2 * hold]),
    ]

    sound = frame(vad.QUIET_PEAK + 1, 0)
    await source.push_audio_frame(sound)
    assert pushed[2] == silence[-2].audio + silence[-1].audio + sound.audio

    pushed.clear()
    line.turn_open = True
    for each in silence[:3]:
        await source.push_audio_frame(each)
    line.turn_open = False
    line.vad._vad_state = VADState.STARTING
    for each in silence[3:6]:
        await source.push_audio_frame(each)
    assert pushed == [f.audio for f in silence[:6]]


async def test_a_recorded_calls_silence_goes_on_as_it_comes(tmp_path) -> None:
    """The recording lays the assistant's audio where the caller's line has got to: held
    silence would move it earlier, so a recorded call holds none."""
    config = resolve(
        CallContext(assistant={"system_instruction": "Be brief."}, phone_number="+14155550100")
    )
    services = services_for(Settings(voice_services="fake"), config)
    tape = Recorder(data_dir=tmp_path, user_id="u", call_id="c", stereo=False, mp3=False)
    conversing = pipeline.build(
        object(),  # type: ignore[arg-type]
        twilio_serializer("MZ0", "CA0"),
        config,
        services,
        recorder=tape,
    )
    (source,) = [p for p in _processors(conversing.worker) if isinstance(p, pipeline.CallInput)]
    assert source.can_wait is None


# Frames handed between processors (voice/frame_push.py)
class Counted(TextFrame):
    """A text frame that counts how often it is formatted as a string."""

    formatted = 0

    def __str__(self) -> str:
        Counted.formatted += 1
        return super().__str__()


class Relay(FrameProcessor):
    """Passes frames on, noting the texts it saw each way; sends `ask` back upstream once."""

    def __init__(self, ask: str | None = None) -> None:
        super().__init__()
        self.down: list[str] = []
        self.up: list[str] = []
        self.ask = ask

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, TextFrame):
            seen = self.down if direction == FrameDirection.DOWNSTREAM else self.up
            seen.append(frame.text)
            if self.ask and direction == FrameDirection.DOWNSTREAM:
                await self.push_frame(Counted(self.ask), FrameDirection.UPSTREAM)
                self.ask = None
        await self.push_frame(frame, direction)


async def test_the_pipeline_module_installs_it() -> None:
    assert FrameProcessor.push_frame is frame_push.push_frame


async def test_frames_go_both_ways_in_order_and_none_is_formatted() -> None:
    first, second, third = Relay(), Relay(ask="again?"), Relay()
    Counted.formatted = 0
    await _run(CallWorker(Pipeline([first, second, third])), Counted("one"), Counted("two"))
    assert first.down == second.down == third.down == ["one", "two"]
    assert first.up == ["again?"] and second.up == third.up == []
    # Pipecat's own push formats the frame for its trace line on every hand-over
    assert Counted.formatted == 0


async def test_push_handlers_registered_still_run_around_the_push() -> None:
    relay, after = Relay(), Relay()
    relay.link(after)
    calls: list[str] = []

    @relay.event_handler("on_before_push_frame")
    async def before(_processor, frame: Frame) -> None:
        calls.append(f"before {frame.text}")

    @relay.event_handler("on_after_push_frame")
    async def done(_processor, frame: Frame) -> None:
        calls.append(f"after {frame.text}")

    async def queue_frame(frame: Frame, direction: FrameDirection, callback=None) -> None:
        calls.append(f"queued {frame.text}")

    after.queue_frame = queue_frame  # type: ignore[method-assign]
    await relay.push_frame(TextFrame("hi"))
    assert calls == ["before hi", "queued hi", "after hi"]


async def test_a_failing_hand_over_becomes_the_processors_error() -> None:
    relay, after = Relay(), Relay()
    relay.link(after)
    errors: list[ErrorFrame] = []

    @relay.event_handler("on_error")
    async def failed(_processor, error: ErrorFrame) -> None:
        errors.append(error)

    async def broken(frame: Frame, direction: FrameDirection, callback=None) -> None:
        raise RuntimeError("queue gone")

    after.queue_frame = broken  # type: ignore[method-assign]
    await relay.push_frame(TextFrame("hi"))
    await asyncio.sleep(0)
    assert [e.error for e in errors] == ["Uncaught exception: queue gone"]
