"""One call's conversation: the Pipecat pipeline over the provider's media WebSocket.

    websocket → serializer → STT → user aggregator (Silero VAD, turn strategies)
              → end of inbound audio [→ recorder: caller] → LLM → TTS [Vobiz: checkpoints]
              → websocket (serializer) → end of outbound audio [→ recorder: assistant]
              → speaking watcher → assistant aggregator

The caller's audio goes no further than the user aggregator, the assistant's no further
than the output transport: nothing after them uses it, and every frame carried through
more processors' queues and tasks costs CPU (the caller's alone, through six more, cost more
than all the rest of a call).
Our own processors (the watchers and the two audio ends) only look at frames and pass or
drop them, so they run in Pipecat's direct mode: each frame is handled in the task that
pushed it, not through a queue and a task of their own.
The transport hands the caller's audio on from the task that receives it (`CallInput`),
its silence half a second at a time while nothing listens closely (`QuietLine`),
and the assistant's audio goes out without a task per chunk (`CallMediaSender`,
`CallAudioContexts`); the worker's processors report frames to observers only when it has
some (`CallWorker`), and every processor hands frames on without building Pipecat's trace
messages (`frame_push`). docs/voice.md, "The pipeline", says what each saves.

The aggregators' turn events make the transcript; the time from the end of a user turn to
the assistant's first audio is the turn's latency. The conversation ends when the caller
goes away (provider `stop`, socket closed) or the assistant ends it (its tools, silence:
`voice/actions.py`), and returns what happened; storing it is the caller's business
(`voice/service.py`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import warnings
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from fastapi import WebSocket

with warnings.catch_warnings():
    # Pipecat imports audioop (deprecated in 3.11, gone in 3.13, where it uses audioop-lts).
    warnings.simplefilter("ignore", DeprecationWarning)
    from loguru import logger as pipecat_logger
    from pipecat.frames.frames import (
        BotStartedSpeakingFrame,
        BotStoppedSpeakingFrame,
        CancelFrame,
        EndFrame,
        Frame,
        InputAudioRawFrame,
        LLMTextFrame,
        OutputAudioRawFrame,
        OutputTransportReadyFrame,
        StartFrame,
        TTSSpeakFrame,
    )
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.pipeline.worker import PipelineParams, PipelineWorker
    from pipecat.pipeline.worker_observer import WorkerObserver
    from pipecat.processors.aggregators.llm_context import LLMContext
    from pipecat.processors.aggregators.llm_response_universal import (
        LLMContextAggregatorPair,
        LLMUserAggregatorParams,
    )
    from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
    from pipecat.serializers.base_serializer import FrameSerializer
    from pipecat.services.tts_service import TTSService
    from pipecat.transports.base_output import BOT_VAD_STOP_FALLBACK_SECS, BaseOutputTransport
    from pipecat.transports.websocket.fastapi import (
        FastAPIWebsocketInputTransport,
        FastAPIWebsocketOutputTransport,
        FastAPIWebsocketParams,
        FastAPIWebsocketTransport,
    )
    from pipecat.turns.user_start import (
        TranscriptionUserTurnStartStrategy,
        VADUserTurnStartStrategy,
    )
    from pipecat.turns.user_stop import SpeechTimeoutUserTurnStopStrategy
    from pipecat.turns.user_turn_strategies import UserTurnStrategies
    from pipecat.utils.context.audio_context_manager import AudioContextManager
    from pipecat.workers.runner import WorkerRunner

from outdial.voice import actions, frame_push
from outdial.voice.fakes import SAMPLE_RATE
from outdial.voice.providers import Services
from outdial.voice.recorder import Recorder
from outdial.voice.serializers import after_speech, outbound_chunks
from outdial.voice.vad import CallVAD, silent

log = logging.getLogger("outdial.voice")

frame_push.install()  # every hand-over between processors without Pipecat's trace lines

# speech_settings.responsiveness → seconds of quiet after the caller's last words before
# the turn is theirs no more (Pipecat's SpeechTimeoutUserTurnStopStrategy).
END_OF_TURN_SECONDS = {"instant": 0.3, "balanced": 0.6, "relaxed": 1.2}
SESSION_TIMEOUT_SECONDS = 4 * 3600  # Vobiz's and Twilio's default call time limit


def _forward_pipecat_logs() -> None:
    """Pipecat logs through loguru at DEBUG to stderr; send warnings and worse to `logging`."""
    if getattr(_forward_pipecat_logs, "done", False):
        return
    pipecat_logger.remove()
    pipecat_logger.add(
        lambda message: logging.getLogger("pipecat").log(
            message.record["level"].no, message.record["message"]
        ),
        level="WARNING",
        format="{message}",
    )
    _forward_pipecat_logs.done = True  # type: ignore[attr-defined]


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _utc(stamp: str) -> str:
    """Pipecat's ISO timestamps (`+00:00`), in the API's form (`Z`)."""
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        return utc_now()
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Conversation:
    """What one conversation produced; times are ISO 8601 UTC."""

    started_at: str = field(default_factory=utc_now)
    ended_at: str | None = None
    ended_reason: str | None = None
    transcript: list[dict[str, Any]] = field(default_factory=list)
    per_turn_latency: list[dict[str, Any]] = field(default_factory=list)
    _turn_ended: float | None = None
    _started: float = field(default_factory=time.monotonic)
    _speaking: list[str] = field(default_factory=list)  # assistant text played, turn not closed
    _speaking_since: str | None = None

    def speaking(self, text: str, *, whole: bool) -> None:
        """Text handed to the TTS: a whole utterance, or a piece of a streamed LLM answer."""
        if not self._speaking:
            self._speaking_since = utc_now()
        self._speaking.append(f" {text} " if whole else text)

    def said(self, role: str, text: str | None, started_at: str, **extra: Any) -> None:
        if role == "assistant":
            # An assistant turn closes what was handed to the TTS. A turn cut off before its
            # first sentence had played comes empty: keep the words it was saying. (An empty
            # turn that was not cut off, an answer that only called a tool, leaves them to
            # the turn that speaks them.)
            empty = not (text and text.strip())
            if empty and not extra.get("interrupted"):
                return
            pending = " ".join("".join(self._speaking).split())
            since, self._speaking, self._speaking_since = self._speaking_since, [], None
            if empty and pending:
                text, started_at = pending, since or started_at
                extra = {**extra, "interrupted": True}
        if text and text.strip():
            entry = {"role": role, "text": text.strip(), "started_at": _utc(started_at)}
            self.transcript.append({**entry, "ended_at": utc_now(), **extra})

    def user_turn_ended(self) -> None:
        self._turn_ended = time.monotonic()

    def bot_started(self) -> None:
        if self._turn_ended is not None:
            latency = round((time.monotonic() - self._turn_ended) * 1000)
            self.per_turn_latency.append({"turn": len(self.per_turn_latency) + 1, "ms": latency})
            self._turn_ended = None

    def end(self, reason: str) -> None:
        if self.ended_reason is None:
            self.ended_reason = reason
            self.ended_at = utc_now()

    def close(self) -> None:
        """Keep what the assistant was saying when the call ended: a turn cut off by the end
        of the call may have no turn event (marked interrupted; it may not all have played)."""
        if self._speaking:
            self.said("assistant", None, utc_now(), interrupted=True)

    @property
    def seconds(self) -> float:
        return round(time.monotonic() - self._started, 3)

    def count(self, role: str) -> int:
        return sum(1 for turn in self.transcript if turn["role"] == role)


HOLD_FRAMES = 25  # silent 20 ms frames handed on together while nobody listens closely


class QuietLine:
    """Whether the caller's silence can wait: no user turn is open and the VAD is quiet.

    While the caller is silent and no turn is open, nothing in the pipeline acts on the
    next half second of silence: the VAD counts no speech to start or stop, the turn strategies
    wait for speech or a transcript, the speech-to-text service has nothing to finish, and
    the silence limit counts seconds. Every frame handed between two processors costs CPU
    (the caller's silent frames through the STT and the user aggregator were about a
    quarter of a call's), so `CallInput` hands such silence on `HOLD_FRAMES` at a time.
    The first frame with sound goes on at once, the silence held before it first."""

    def __init__(self, vad: CallVAD) -> None:
        self.vad = vad
        self.turn_open = False

    def __call__(self) -> bool:
        return not self.turn_open and self.vad.quiet


class CallInput(FastAPIWebsocketInputTransport):
    """The WebSocket's input, handing the caller's audio on from the task that receives it.

    Pipecat's input transport puts every audio frame on a queue of its own, for a task that
    awaits each with a timeout (a timer, and on Python 3.11 a task of its own, every 20 ms),
    to run an audio filter outdial does not configure and push the frame on. Pushed from
    the receiving task instead, the frames go in the same order, with the other frames the
    serializer makes in the order they came, and the transport's audio task idles.

    Silence that can wait (`QuietLine`) is held and handed on `HOLD_FRAMES` frames at a
    time, as one frame of the same audio; not in a recorded call, whose recording lays the
    assistant's audio on the caller's line where that line has got to when it arrives."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.can_wait: QuietLine | None = None
        self._held: list[InputAudioRawFrame] = []

    async def push_audio_frame(self, frame: InputAudioRawFrame) -> None:
        params = self._params
        if params.audio_in_filter is not None:  # the filter's own way
            await super().push_audio_frame(frame)
            return
        wanted = params.audio_in_enabled and params.audio_in_passthrough and not self._paused
        if not (wanted and frame.audio):
            return
        if self.can_wait is not None and silent(frame.audio) and self.can_wait():
            self._held.append(frame)
            if len(self._held) < HOLD_FRAMES:
                return
        elif self._held:
            self._held.append(frame)
        else:
            await self.push_frame(frame)
            return
        held, self._held = self._held, []
        await self.push_frame(replace(held[0], audio=b"".join(each.audio for each in held)))


class CallMediaSender(BaseOutputTransport.MediaSender):
    """Pipecat's sender of the assistant's audio, bounding its two waits by `asyncio.timeout`.

    For every chunk of audio Pipecat's sender awaits the next chunk off its queue, and then
    the write to the socket, each through `asyncio.wait_for`, which on Python 3.11 runs the
    awaited call as a task of its own: two tasks made and two turns of the event loop per
    chunk before it leaves, on a busy process the larger part of the time from a reply's
    first audio to the phone. `asyncio.timeout` bounds the same waits (and is what
    `wait_for` itself uses from Python 3.12): a chunk already queued is taken at once, and
    is written in the same turn. The timeouts and what they do are Pipecat's.

    Nor does it send the bot-speaking heartbeat: Pipecat broadcasts a `BotSpeakingFrame`
    through the whole pipeline, upstream and down, every 200 ms of the assistant's speech,
    for its worker's idle timeout and its wake-phrase strategy, neither of which a call
    uses (`CallWorker`, `turn_strategies`); they were an eighth of the frames handed
    between processors. The bot's start and stop frames are sent as before."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._bot_speaking_frame_period = math.inf

    def _next_frame(self) -> Any:
        if self._mixer:  # Pipecat's own loop, which never waits
            return super()._next_frame()
        return self._queued(BOT_VAD_STOP_FALLBACK_SECS)

    async def _queued(self, vad_stop_secs: float) -> Any:
        while True:
            try:
                async with asyncio.timeout(vad_stop_secs):
                    frame = await self._audio_queue.get()
            except TimeoutError:
                # No audio for a while: the bot has stopped speaking, if it had not said so.
                await self._bot_stopped_speaking()
                continue
            await self._filter_audio(frame)
            self._apply_volume(frame)
            yield frame
            self._audio_queue.task_done()

    async def _internal_write_audio_frame(self, frame: OutputAudioRawFrame) -> bool:
        if not self._transport.is_usable:
            return False
        timeout = self._params.audio_out_write_timeout_secs
        try:
            async with asyncio.timeout(timeout):
                return await self._transport.write_audio_frame(frame)
        except TimeoutError as error:
            await self._transport.push_error(
                f"{self._transport} timed out after {timeout}s writing audio to the "
                "transport; the peer has stopped reading",
                exception=error,
                force_treat_as_permanent=True,
            )
            return False


class CallAudioContexts(AudioContextManager):
    """Pipecat's queues of a TTS service's audio on its way out, awaiting each item under
    `asyncio.timeout` rather than `asyncio.wait_for` (a task per item on Python 3.11; see
    `CallMediaSender`). Pipecat's timeout and keepalives are kept."""

    async def get(self, context_id: str, timeout: float) -> Any:  # noqa: ASYNC109 (Pipecat's)
        queue = self._contexts[context_id]
        item = self._KEEPALIVE
        while item is self._KEEPALIVE:
            async with asyncio.timeout(timeout):
                item = await queue.get()
        return item


class CallOutput(FastAPIWebsocketOutputTransport):
    """The WebSocket's output, sending the assistant's audio through `CallMediaSender`."""

    async def set_transport_ready(self, frame: StartFrame) -> None:
        params = self._params
        if params.audio_out_destinations or params.video_out_destinations:
            await super().set_transport_ready(frame)  # (outdial names no destinations)
            return
        sender = CallMediaSender(
            self,
            destination=None,
            sample_rate=self.sample_rate,
            audio_chunk_size=self.audio_chunk_size,
            params=params,
        )
        self._media_senders[None] = sender
        await sender.start(frame)
        await self.push_frame(OutputTransportReadyFrame(), FrameDirection.UPSTREAM)


class CallTransport(FastAPIWebsocketTransport):
    """Pipecat's FastAPI WebSocket transport, with `CallInput` and `CallOutput`."""

    def __init__(self, websocket: WebSocket, params: FastAPIWebsocketParams) -> None:
        super().__init__(websocket, params)
        self._input = self.call_input = CallInput(
            self, self._client, self._params, name=self._input_name
        )
        self._output = CallOutput(self, self._client, self._params, name=self._output_name)


class SpeakingWatcher(FrameProcessor):
    """Notes when the assistant's audio starts leaving (per-turn latency) and stops (a hold
    line before a transfer has played)."""

    def __init__(self, conversation: Conversation) -> None:
        super().__init__(enable_direct_mode=True)  # (the module docstring says why)
        self.conversation = conversation
        self.ending: actions.Ending | None = None

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, BotStartedSpeakingFrame):
            self.conversation.bot_started()
            if self.ending is not None:
                self.ending.bot_started()
        elif isinstance(frame, BotStoppedSpeakingFrame) and self.ending is not None:
            self.ending.bot_stopped()
        await self.push_frame(frame, direction)


class OutboundAudioEnd(FrameProcessor):
    """Where the assistant's audio stops, once the output transport has sent it: handed to
    the recorder, if any, and not passed on (nothing after it uses the audio). The recorder
    also learns here that the call has ended."""

    def __init__(self, recorder: Recorder | None) -> None:
        super().__init__(enable_direct_mode=True)  # (the module docstring says why)
        self.recorder = recorder

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, OutputAudioRawFrame):
            if self.recorder is not None:
                await self.recorder.say(frame)
            return
        if isinstance(frame, (EndFrame, CancelFrame)) and self.recorder is not None:
            self.recorder.end()
        await self.push_frame(frame, direction)


class InboundAudioEnd(FrameProcessor):
    """Where the caller's audio stops: handed to the recorder, if any, and not passed on."""

    def __init__(self, recorder: Recorder | None) -> None:
        super().__init__(enable_direct_mode=True)  # (the module docstring says why)
        self.recorder = recorder

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            if self.recorder is not None:
                await self.recorder.hear(frame)
            return
        await self.push_frame(frame, direction)


class SpeechQueueWatcher(FrameProcessor):
    """Notes the text handed to the TTS (the TTS passes a sentence's text on only once its
    audio has played, so a call cut off mid-sentence would otherwise lose it)."""

    def __init__(self, conversation: Conversation) -> None:
        super().__init__(enable_direct_mode=True)  # (the module docstring says why)
        self.conversation = conversation

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if direction == FrameDirection.DOWNSTREAM:
            if isinstance(frame, TTSSpeakFrame):
                self.conversation.speaking(frame.text, whole=True)
            elif isinstance(frame, LLMTextFrame):
                self.conversation.speaking(frame.text, whole=False)
        await self.push_frame(frame, direction)


class Observers(WorkerObserver):
    """Pipecat's proxy for a worker's observers, false while it has none.

    Every processor asks `if observer:` before it reports a frame it pushes or processes
    (a record built and awaited, twice for every frame handed between two processors), and
    a call's worker has no observer to report to: false, the proxy spares each hop that work,
    about a fifth of its cost (docs/benchmarks.md). An observer added later is told as
    before."""

    def __bool__(self) -> bool:
        return bool(self._observers)


class CallWorker(PipelineWorker):
    """Pipecat's pipeline worker for one call: no RTVI, no turn tracking (an observer on
    every push; the aggregators' events suffice), no idle timeout (the call's own timers end
    it), and `Observers` for its observers' proxy."""

    def __init__(self, pipeline: Pipeline) -> None:
        super().__init__(
            pipeline,
            params=PipelineParams(
                audio_in_sample_rate=SAMPLE_RATE, audio_out_sample_rate=SAMPLE_RATE
            ),
            enable_rtvi=False,
            enable_turn_tracking=False,
            idle_timeout_secs=None,
        )
        self._observer = Observers()


def turn_strategies(speech: dict[str, Any]) -> UserTurnStrategies:
    """speech_settings → Pipecat's turn rules (the mapping is in docs/voice.md)."""
    barge_in = speech.get("interruptions", "on") == "on"
    timeout = END_OF_TURN_SECONDS.get(speech.get("responsiveness", "balanced"), 0.6)
    return UserTurnStrategies(
        start=[
            VADUserTurnStartStrategy(enable_interruptions=barge_in),
            TranscriptionUserTurnStartStrategy(enable_interruptions=barge_in),
        ],
        stop=[SpeechTimeoutUserTurnStopStrategy(user_speech_timeout=timeout)],
    )


@dataclass
class Conversing:
    """A built pipeline, ready to run."""

    worker: PipelineWorker
    context: LLMContext
    conversation: Conversation
    ending: actions.Ending
    recorder: Recorder | None = None


def build(
    websocket: WebSocket,
    serializer: FrameSerializer,
    config: dict[str, Any],
    services: Services,
    opt_out: actions.OptOut | None = None,
    transfer: actions.Transfer | None = None,
    recorder: Recorder | None = None,
) -> Conversing:
    """The call's pipeline. `opt_out` stores the person's opt-out (the `opt_out` tool);
    `transfer`, when given, offers the `transfer` tool and has the provider transfer;
    `recorder`, when given, records both sides (`voice/recorder.py`)."""
    _forward_pipecat_logs()
    conversation = Conversation()
    transport = CallTransport(
        websocket,
        FastAPIWebsocketParams(
            audio_in_enabled=True,
            audio_out_enabled=True,
            add_wav_header=False,
            audio_out_10ms_chunks=outbound_chunks(serializer),
            serializer=serializer,
            session_timeout=SESSION_TIMEOUT_SECONDS,
        ),
    )
    context = LLMContext(
        [{"role": "system", "content": config["system_prompt"]}],
        tools=actions.tools(config, transfer=transfer is not None),
    )
    vad = CallVAD(sample_rate=SAMPLE_RATE)
    aggregators = LLMContextAggregatorPair(
        context,
        user_params=LLMUserAggregatorParams(
            vad_analyzer=vad,
            user_turn_strategies=turn_strategies(config["speech_settings"]),
            user_idle_timeout=actions.silence_seconds(config),
        ),
    )
    if isinstance(services.tts, TTSService):
        services.tts._audio_context_manager = CallAudioContexts()
    speaking = SpeakingWatcher(conversation)
    gate = actions.ConfirmGate(config)
    pipeline = Pipeline(
        [
            transport.input(),
            services.stt,
            aggregators.user(),
            InboundAudioEnd(recorder),
            *([gate] if gate.required else []),  # asks before acting, only when configured
            services.llm,
            SpeechQueueWatcher(conversation),
            services.tts,
            *after_speech(serializer),
            transport.output(),
            OutboundAudioEnd(recorder),
            speaking,
            aggregators.assistant(),
        ]
    )
    worker = CallWorker(pipeline)
    ending = speaking.ending = actions.Ending(worker, conversation)
    actions.register(services.llm, ending, opt_out, transfer, gate)
    line = QuietLine(vad)
    if recorder is None:  # (a recording lays the assistant's audio on the caller's line)
        transport.call_input.can_wait = line
    _wire_events(transport, aggregators, worker, conversation, config, line)

    @aggregators.user().event_handler("on_user_turn_idle")
    async def silent(_aggregator: Any) -> None:
        await ending(actions.SILENCE_TIMEOUT, actions.SILENCE_GOODBYE)

    return Conversing(worker, context, conversation, ending, recorder)


def _wire_events(
    transport: FastAPIWebsocketTransport,
    aggregators: LLMContextAggregatorPair,
    worker: PipelineWorker,
    conversation: Conversation,
    config: dict[str, Any],
    line: QuietLine,
) -> None:
    @transport.event_handler("on_client_connected")
    async def greet(_transport: Any, _websocket: Any) -> None:
        opening = config.get("opening_message") or ""
        if config.get("assistant_speaks_first", True) and opening.strip():
            await worker.queue_frames([TTSSpeakFrame(opening)])

    @transport.event_handler("on_client_disconnected")
    async def gone(_transport: Any, _websocket: Any) -> None:
        conversation.end("customer_hung_up")
        await worker.cancel()

    @transport.event_handler("on_session_timeout")
    async def too_long(_transport: Any, _websocket: Any) -> None:
        conversation.end("time_limit")
        await worker.cancel()

    @aggregators.user().event_handler("on_user_turn_started")
    async def user_speaks(_aggregator: Any, _strategy: Any) -> None:
        line.turn_open = True

    @aggregators.user().event_handler("on_user_turn_stopped")
    async def user_said(_aggregator: Any, _strategy: Any, message: Any) -> None:
        line.turn_open = False
        conversation.user_turn_ended()
        conversation.said("user", message.content, message.timestamp)

    @aggregators.assistant().event_handler("on_assistant_turn_stopped")
    async def assistant_said(_aggregator: Any, message: Any) -> None:
        conversation.said(
            "assistant", message.content, message.timestamp, interrupted=message.interrupted
        )


async def run(conversing: Conversing) -> Conversation:
    """Run the conversation until it ends; a failure ends it with reason `error`."""
    try:
        runner = WorkerRunner(handle_sigint=False, handle_sigterm=False)
        await runner.add_workers(conversing.worker)
        await runner.run()
    except Exception:
        log.exception("the conversation failed")
        conversing.conversation.end("error")
    await conversing.ending.close()
    conversing.conversation.end("pipeline_ended")
    conversing.conversation.close()
    return conversing.conversation
