"""Offline STT, LLM and TTS services that run inside the real Pipecat pipeline.

They make the whole voice runtime testable without a network or a model: the fake STT hears
the simulated caller's words carried in the audio (`fake_speech`), the fake LLM answers
deterministically from the prompt and what the caller said, and the fake TTS "speaks" by
sending the text carried in audio, padded with silence so that speaking takes time in
proportion to the text, as real speech does.
"""

from __future__ import annotations

import audioop
import uuid
from collections.abc import AsyncGenerator, Collection, Sequence
from typing import Any

from pipecat.frames.frames import (
    Frame,
    FunctionCallFromLLM,
    LLMContextFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
)
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.llm_service import LLMService
from pipecat.services.settings import LLMSettings, STTSettings, TTSSettings
from pipecat.services.stt_service import STTService
from pipecat.services.tts_service import TTSService
from pipecat.utils.time import time_now_iso8601

from outdial.voice import fake_speech

SAMPLE_RATE = 8000
SECONDS_PER_CHARACTER = 0.01  # ~100 characters a second: quick, but proportional
MIN_SPEECH_SECONDS = 0.2


class FakeSTTService(STTService):
    """Transcribes the simulated caller's carried words, exactly and at once."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            sample_rate=SAMPLE_RATE,
            ttfs_p99_latency=0.0,
            settings=STTSettings(model="fake", language=None),
            **kwargs,
        )
        self._decoder = fake_speech.Decoder()

    async def run_stt(self, audio: bytes) -> AsyncGenerator[Frame | None, None]:
        # Pipecat hands over 16-bit PCM; back to μ-law gives the caller's bytes again.
        for text in self._decoder.feed(audioop.lin2ulaw(audio, 2)):
            if text.strip():
                yield TranscriptionFrame(text, "", time_now_iso8601(), finalized=True)


OPT_OUT_PHRASES = ("stop calling", "do not call", "don't call", "remove me")
TRANSFER_PHRASES = ("transfer me", "a human", "a real person", "an agent")


def _says_goodbye(text: str) -> bool:
    words = text.lower().replace(",", " ").replace("!", " ").replace(".", " ").split()
    return "goodbye" in words or "bye" in words


def fake_reply(system_prompt: str, user_text: str) -> str:
    """What the fake assistant answers: deterministic, and visibly shaped by its prompt."""
    said = user_text.strip().rstrip(".!?")
    if _says_goodbye(said):
        return "Thank you for your time. Goodbye!"
    return f"Thanks, I heard: {said}."


def fake_chat_reply(system_prompt: str, messages: Sequence[tuple[str, str]]) -> str:
    """The fake assistant's answer in a text chat (`POST /chat`): `fake_reply` to the newest
    user message, then what it was given, so tests can see it: the earlier user messages of
    the history and the first line of its system prompt."""
    said = [text.strip() for role, text in messages if role == "user"]
    reply = fake_reply(system_prompt, said[-1] if said else "")
    if len(said) > 1:
        reply += " Earlier you said: " + " / ".join(said[:-1]) + "."
    lines = system_prompt.strip().splitlines()
    return reply + (f" My instructions: {lines[0]}" if lines else "")


def fake_tool_call(user_text: str, offered: Collection[str]) -> str | None:
    """The tool the fake assistant calls for this turn, if any (only among those offered):
    `opt_out` when the person asks to stop being called, `transfer` when they ask for a
    person, `hang_up` when they say goodbye."""
    text = " ".join(user_text.lower().replace("\u2019", "'").split())
    if "opt_out" in offered and any(phrase in text for phrase in OPT_OUT_PHRASES):
        return "opt_out"
    if "transfer" in offered and any(phrase in text for phrase in TRANSFER_PHRASES):
        return "transfer"
    if "hang_up" in offered and _says_goodbye(text):
        return "hang_up"
    return None


def fake_summary(prompt: str, transcript: list[dict[str, Any]]) -> str:
    """A deterministic call summary built from the transcript (the prompt only shapes real LLMs)."""
    caller = [turn["text"].rstrip(".!? ") for turn in transcript if turn["role"] == "user"]
    agent = [turn["text"] for turn in transcript if turn["role"] == "assistant"]
    if not caller:
        return f"The assistant spoke {len(agent)} time(s); the person said nothing."
    return f"The person said: {' / '.join(caller)}. The assistant answered {len(agent)} time(s)."


def _unset(kind: Any, **values: Any) -> Any:
    """Settings with every field given (None where the fake has no such knob)."""
    import dataclasses

    names = [f.name for f in dataclasses.fields(kind) if f.name != "extra"]
    return kind(**{name: None for name in names} | values)


def _text_of(message: Any) -> str:
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def _offered(context: LLMContext) -> set[str]:
    tools = context.tools
    standard = getattr(tools, "standard_tools", None) or []
    return {tool.name for tool in standard}


class FakeLLMService(LLMService):
    """Answers each user turn with `fake_tool_call`'s tool, else `fake_reply`; one-shot
    inference with `fake_summary` when given an instruction (a call summary), else with
    `fake_chat_reply` (a `POST /chat` turn)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(settings=_unset(LLMSettings, model="fake"), **kwargs)

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, LLMContextFrame):
            messages = frame.context.get_messages()
            system = next(
                (
                    _text_of(m)
                    for m in messages
                    if isinstance(m, dict) and m.get("role") == "system"
                ),
                "",
            )
            user = next(
                (
                    _text_of(m)
                    for m in reversed(messages)
                    if isinstance(m, dict) and m.get("role") == "user"
                ),
                "",
            )
            tool = fake_tool_call(user, _offered(frame.context))
            await self.push_frame(LLMFullResponseStartFrame())
            if tool is not None:
                call = FunctionCallFromLLM(tool, f"call_{uuid.uuid4().hex[:12]}", {}, frame.context)
                await self.run_function_calls([call])
            else:
                await self._push_llm_text(fake_reply(system, user))
            await self.push_frame(LLMFullResponseEndFrame())
        else:
            await self.push_frame(frame, direction)

    async def run_inference(
        self,
        context: LLMContext,
        max_tokens: int | None = None,
        system_instruction: str | None = None,
        response_schema: dict[str, Any] | None = None,
    ) -> str | None:
        messages = [m for m in context.get_messages() if isinstance(m, dict)]
        if system_instruction is None:  # a chat turn: the system prompt is in the context
            system = next((_text_of(m) for m in messages if m.get("role") == "system"), "")
            turns = [(str(m.get("role")), _text_of(m)) for m in messages]
            return fake_chat_reply(system, turns)
        transcript = [
            {"role": m.get("role"), "text": _text_of(m)}
            for m in messages
            if m.get("role") in ("user", "assistant")
        ]
        return fake_summary(system_instruction, transcript)


class FakeTTSService(TTSService):
    """Speaks text as carried-text audio plus silence, in proportion to the text's length."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            sample_rate=SAMPLE_RATE,
            push_start_frame=True,
            push_stop_frames=True,
            settings=TTSSettings(model="fake", voice="fake", language=None),
            **kwargs,
        )

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame | None, None]:
        spoken = b"".join(fake_speech.encode(text))
        seconds = max(MIN_SPEECH_SECONDS, SECONDS_PER_CHARACTER * len(text))
        padding = fake_speech.silence(max(0.0, seconds - len(spoken) / SAMPLE_RATE))
        pcm = audioop.ulaw2lin(spoken + padding, 2)
        await self.stop_ttfb_metrics()
        step = 2 * SAMPLE_RATE // 50 * 2  # 40 ms of 16-bit samples per frame
        for start in range(0, len(pcm), step):
            yield TTSAudioRawFrame(pcm[start : start + step], SAMPLE_RATE, 1, context_id=context_id)
