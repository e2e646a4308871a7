"""What the assistant can do to the call itself: its tools, and hanging up on silence.

The call's LLM is given function tools (Pipecat function calling, so a real LLM decides
when to use them, from their descriptions):

| Tool | Offered | Does |
|---|---|---|
| `opt_out` | always | lists the number as do-not-call, says a goodbye, ends the call |
| `hang_up` | `call_actions.enabled` and `allow_hangup` | says a goodbye, ends the call |
| `transfer` | `enabled`, `allow_transfer`, `transfer_number` | a hold line, then the transfer |

With `call_actions.confirm_required`, `hang_up` and `transfer` ask first and act on a yes in
the person's next turn (`ConfirmGate`); `opt_out` never waits.

With `call_actions.auto_hangup_silence_seconds` (and `enabled`), the assistant ends the call
when the person has said nothing for that long after the assistant stopped speaking.

Ending a call from inside the conversation names the reason first (the first reason given
wins, so the socket closing afterwards does not count as the caller hanging up), then queues
the goodbye and an `EndFrame` at the pipeline's source: the output transport plays the
queued audio before it stops and closes the socket. The provider hang-up follows the end of
the pipeline (`voice/media.py`), because a Vobiz call kept alive (`keepCallAlive`) outlives
its stream. A transfer waits for its hold line to play, asks the provider to transfer (which
ends the stream there), then ends the pipeline; a transfer that fails hangs up instead.

With `call_actions.webhook_url`, each tool's action is announced to that URL
(`voice/notice.py`) as its goodbye or hold line starts: a notice, not a veto. A hang-up does
not wait for it (the goodbye ends the stream); a transfer waits for it (at most
`webhook_timeout_ms`, while the hold line plays) before asking the provider.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from pipecat.adapters.llm.schemas.function_schema import FunctionSchema
from pipecat.adapters.llm.schemas.tools_schema import ToolsSchema
from pipecat.frames.frames import (
    EndFrame,
    Frame,
    FunctionCallResultProperties,
    LLMContextFrame,
    TTSSpeakFrame,
)
from pipecat.pipeline.worker import PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.llm_service import FunctionCallParams

log = logging.getLogger("outdial.voice")

OPT_OUT = "opt_out"
HANG_UP = "hang_up"
TRANSFER = "transfer"
ASSISTANT_HUNG_UP = "assistant_hung_up"
SILENCE_TIMEOUT = "silence_timeout"
TRANSFERRED = "transferred"
# Conversations the assistant ended: the provider is asked to hang the call up.
ENDED_BY_ASSISTANT = frozenset({ASSISTANT_HUNG_UP, SILENCE_TIMEOUT})

OPT_OUT_GOODBYE = "Understood, we will not call you again. Goodbye!"
HANG_UP_GOODBYE = "Thank you for your time. Goodbye!"
SILENCE_GOODBYE = "I can't hear anyone, so I will end the call now. Goodbye!"
TRANSFER_HOLD = "Please hold while I transfer your call."
TRANSFER_FAILED = "Sorry, I could not transfer your call. Goodbye!"
CONFIRM_HANG_UP = "Just to confirm: shall I end the call now?"
CONFIRM_TRANSFER = "Just to confirm: shall I transfer you to a colleague?"
CONFIRM_DECLINED = "Alright, let's continue."
# Words counted as an answer to a confirmation when `confirm_yes` / `confirm_no` are empty.
DEFAULT_YES = ("yes", "yeah", "yep", "sure", "please", "ok", "okay", "correct", "go ahead")
DEFAULT_NO = ("no", "nope", "not", "don't", "do not", "wait")
HOLD_PLAY_SECONDS = 15.0  # the hold line has played by then, or the transfer goes ahead

OPT_OUT_DESCRIPTION = (
    "Call this when the person asks not to be called again (for example: stop calling me, "
    "do not call me, remove me from your list). It removes their number from all future "
    "calls and ends the call with a short goodbye, which is spoken for you: say nothing else."
)
HANG_UP_DESCRIPTION = (
    "Call this to end the call when the conversation is over, for example when the person "
    "says goodbye. A short goodbye is spoken for you: say nothing else."
)

TRANSFER_DESCRIPTION = (
    "Call this when the person asks to speak to a human, or when the conversation needs "
    "someone else. It connects them to a colleague; a short hold line is spoken for you: "
    "say nothing else."
)

# Puts the call's number on the do-not-call list; True when it was not listed yet.
OptOut = Callable[[], Awaitable[bool]]
# Has the provider connect the person to the transfer number; True when it accepted.
Transfer = Callable[[], Awaitable[bool]]


class Ends(Protocol):
    """The conversation, as far as ending it goes (`pipeline.Conversation`)."""

    ended_reason: str | None

    def end(self, reason: str) -> None: ...


def tools(config: dict[str, Any], *, transfer: bool = False) -> ToolsSchema:
    """The tools a call's LLM is offered, from its resolved configuration."""
    actions = config["call_actions"]
    offered = [FunctionSchema(OPT_OUT, OPT_OUT_DESCRIPTION, properties={}, required=[])]
    if actions["enabled"] and actions["allow_hangup"]:
        description = HANG_UP_DESCRIPTION
        triggers = [t.strip() for t in actions.get("hangup_triggers") or [] if t.strip()]
        if triggers:
            description += " Also call it when the person says: " + "; ".join(triggers) + "."
        offered.append(FunctionSchema(HANG_UP, description, properties={}, required=[]))
    if transfer:
        description = TRANSFER_DESCRIPTION
        triggers = [t.strip() for t in actions.get("transfer_triggers") or [] if t.strip()]
        if triggers:
            description += " Also call it when the person says: " + "; ".join(triggers) + "."
        offered.append(FunctionSchema(TRANSFER, description, properties={}, required=[]))
    return ToolsSchema(standard_tools=offered)


def silence_seconds(config: dict[str, Any]) -> float:
    """Seconds of silence from the person after which the assistant hangs up (0: never)."""
    actions = config["call_actions"]
    seconds = actions.get("auto_hangup_silence_seconds")
    return float(seconds) if actions["enabled"] and seconds else 0.0


class Ending:
    """Ends the conversation from inside: a reason, a goodbye, then the end of the pipeline."""

    def __init__(self, worker: PipelineWorker, conversation: Ends) -> None:
        self._worker = worker
        self._conversation = conversation
        self.reason: str | None = None
        # Announces a tool's action to `call_actions.webhook_url`; set by the runtime.
        self.notice: Callable[[str], Awaitable[None]] | None = None
        self._notices: list[asyncio.Task[None]] = []
        self._bot_spoke = False
        self._played: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._kept: list[asyncio.Future[Any]] = []

    async def __call__(self, reason: str, goodbye: str, action: str | None = None) -> None:
        """End the call for `reason` after `goodbye`; a tool's `action` is announced."""
        if self._begin(reason):
            if action is not None:
                self._announce(action)
            await self._worker.queue_frames([TTSSpeakFrame(goodbye), EndFrame()])

    async def say(self, text: str) -> None:
        """A line of the assistant's own that ends nothing (a confirmation question)."""
        if self.reason is None and self._conversation.ended_reason is None:
            await self._worker.queue_frames([TTSSpeakFrame(text)])

    def transfer(self, transfer: Transfer) -> None:
        """Say the hold line, let the provider transfer the call, end the pipeline (in a task
        of its own: a tool handler is cancelled when the person speaks)."""
        if self._begin(TRANSFERRED):
            announced = self._announce(TRANSFER)
            self._task = asyncio.create_task(self._transfer(transfer, announced))

    def _announce(self, action: str) -> asyncio.Task[None] | None:
        """Start the action's notice beside the goodbye or hold line (it never raises and
        ends within its timeout); `notices_sent` waits for it."""
        if self.notice is None:
            return None
        task = asyncio.ensure_future(self.notice(action))
        self._notices.append(task)
        return task

    async def notices_sent(self) -> None:
        """Wait for the notices still on their way (each at most its timeout)."""
        await asyncio.gather(*self._notices, return_exceptions=True)

    def keep(self, work: Awaitable[Any]) -> asyncio.Future[Any]:
        """Work that must finish even when the call ends under it (`close` waits for it)."""
        future = asyncio.ensure_future(work)
        self._kept.append(future)
        return future

    async def close(self) -> None:
        """The pipeline has ended: a transfer still waiting is abandoned, kept work finishes."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await asyncio.gather(*self._kept, return_exceptions=True)

    async def _transfer(self, transfer: Transfer, announced: asyncio.Task[None] | None) -> None:
        self._played, self._bot_spoke = asyncio.Event(), False
        await self._worker.queue_frames([TTSSpeakFrame(TRANSFER_HOLD)])
        try:
            await asyncio.wait_for(self._played.wait(), HOLD_PLAY_SECONDS)
        except TimeoutError:
            log.warning("the hold line did not finish playing; transferring anyway")
        if announced is not None:
            # Shielded: the notice must not be cancelled with an abandoned transfer.
            await asyncio.shield(announced)
        transferred = False
        try:
            transferred = await transfer()
        except Exception:
            log.exception("the transfer failed")
        if transferred:
            await self._worker.queue_frames([EndFrame()])
            return
        self.reason = self._conversation.ended_reason = ASSISTANT_HUNG_UP
        await self._worker.queue_frames([TTSSpeakFrame(TRANSFER_FAILED), EndFrame()])

    def bot_started(self) -> None:
        self._bot_spoke = True

    def bot_stopped(self) -> None:
        """The assistant's audio stopped: a hold line waiting to play has played."""
        if self._played is not None and self._bot_spoke:
            self._played.set()

    def _begin(self, reason: str) -> bool:
        if self.reason is not None or self._conversation.ended_reason is not None:
            return False
        self.reason = reason
        self._conversation.end(reason)
        return True


def _words(text: str) -> str:
    cleaned = re.sub(r"[^\w' ]+", " ", text.lower().replace("\u2019", "'"))
    return f" {' '.join(cleaned.split())} "


def confirmation(text: str, yes: list[str], no: list[str]) -> bool | None:
    """The person's answer to a confirmation: True (yes), False (no), None (neither).

    Words and phrases match whole words, in any case; a "no" word wins over a "yes" word
    ("no, please don't"). Empty lists mean the defaults."""
    said = _words(text)

    def says(phrases: list[str]) -> bool:
        return any(_words(p).strip() and _words(p) in said for p in phrases)

    if says(no or list(DEFAULT_NO)):
        return False
    if says(yes or list(DEFAULT_YES)):
        return True
    return None


def _last_user_text(frame: LLMContextFrame) -> str:
    for message in reversed(frame.context.get_messages()):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            return str(content or "")
    return ""


class ConfirmGate(FrameProcessor):
    """Between the user aggregator and the LLM: with `call_actions.confirm_required`, a
    hang-up or transfer waits for the person's next turn. Yes: it goes ahead; no: the
    assistant says it continues; anything else: it is dropped and the turn is answered."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        actions = config["call_actions"]
        self.required = bool(actions.get("confirm_required"))
        self._yes = [w for w in actions.get("confirm_yes") or [] if w.strip()]
        self._no = [w for w in actions.get("confirm_no") or [] if w.strip()]
        self._pending: Callable[[], Awaitable[None]] | None = None

    def ask(self, act: Callable[[], Awaitable[None]]) -> None:
        self._pending = act

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if self._pending is not None and isinstance(frame, LLMContextFrame):
            act, self._pending = self._pending, None
            answer = confirmation(_last_user_text(frame), self._yes, self._no)
            if answer is True:
                await act()
                return
            if answer is False:
                await self.push_frame(TTSSpeakFrame(CONFIRM_DECLINED), direction)
                return
        await self.push_frame(frame, direction)


def register(
    llm: Any,
    ending: Ending,
    opt_out: OptOut | None,
    transfer: Transfer | None = None,
    gate: ConfirmGate | None = None,
) -> None:
    """Give the LLM service the tools' handlers (`tools` says which are offered). With a
    `gate` that requires it, hanging up and transferring ask the person first; an opt-out
    never waits (a person asking not to be called is always heard)."""
    done = FunctionCallResultProperties(run_llm=False)

    async def act_or_ask(act: Callable[[], Awaitable[None]], question: str) -> None:
        if gate is None or not gate.required:
            await act()
            return
        gate.ask(act)
        await ending.say(question)

    async def opt_out_tool(params: FunctionCallParams) -> None:
        listed = False
        try:
            # Shielded: Pipecat cancels a tool handler when the person speaks or hangs up,
            # and the opt-out must be stored all the same.
            if opt_out is not None:
                listed = await asyncio.shield(ending.keep(opt_out()))
        except Exception:  # the goodbye and the hang-up still happen
            log.exception("the opt-out could not be stored")
        await params.result_callback({"opted_out": True, "newly_listed": listed}, properties=done)
        await ending(ASSISTANT_HUNG_UP, OPT_OUT_GOODBYE, OPT_OUT)

    async def hang_up() -> None:
        await ending(ASSISTANT_HUNG_UP, HANG_UP_GOODBYE, HANG_UP)

    async def hand_over() -> None:
        if transfer is not None:
            ending.transfer(transfer)

    async def hang_up_tool(params: FunctionCallParams) -> None:
        await params.result_callback({"hung_up": True}, properties=done)
        await act_or_ask(hang_up, CONFIRM_HANG_UP)

    async def transfer_tool(params: FunctionCallParams) -> None:
        await params.result_callback({"transferring": transfer is not None}, properties=done)
        if transfer is not None:
            await act_or_ask(hand_over, CONFIRM_TRANSFER)

    llm.register_function(OPT_OUT, opt_out_tool)
    llm.register_function(HANG_UP, hang_up_tool)
    llm.register_function(TRANSFER, transfer_tool)
