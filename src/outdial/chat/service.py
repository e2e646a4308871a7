"""A chat turn: read the session, ask the assistant's LLM, store the exchange.

The prompt is the one a call gets (`voice.config.resolve` with no campaign and no
recipient: the assistant's system instruction, guardrails, speech rules and style), followed
by the newest `HISTORY_TURNS` exchanges of the session and the new input. The LLM is the one
a call would use (`voice.providers.llm_for`: fake offline, else the assistant's `llm`),
asked once through Pipecat's `run_inference`, as call summaries are. No transaction is held
while it answers: the session is read in the request's transaction, which is committed
first, and the exchange is stored in a short write transaction of its own.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from outdial.assistant import service as assistant_service
from outdial.chat import repository
from outdial.chat.schemas import ChatRequest
from outdial.config import Settings
from outdial.database import write_transaction
from outdial.errors import Conflict, Invalid, NotFound, OutdialError
from outdial.ids import new_id
from outdial.models import ChatSession
from outdial.voice.config import CallContext, resolve

log = logging.getLogger("outdial.chat")

HISTORY_TURNS = 20  # exchanges of the session given to the LLM with each new input
REPLY_TIMEOUT_SECONDS = 30.0


class LLMUnavailable(OutdialError):
    """The assistant's LLM failed, timed out or answered nothing."""

    status_code = 502


class VoiceExtraMissing(OutdialError):
    status_code = 503


@dataclass
class Turn:
    """What one chat turn works with, read before the LLM is asked."""

    chat: ChatSession
    new: bool
    config: dict[str, Any]
    history: list[tuple[str, str]] = field(default_factory=list)


async def prepare(session: AsyncSession, user_id: str, body: ChatRequest) -> Turn:
    """The assistant's configuration and the session's recent history.

    Another user's session is an unknown one (404); a session of another assistant is a 409.
    """
    assistant = await assistant_service.get(session, user_id, body.assistant_id)
    config = resolve(CallContext(assistant=assistant.config, phone_number=""))
    if body.session_id is None:
        chat = ChatSession(id=new_id("chat"), user_id=user_id, assistant_id=assistant.id)
        return Turn(chat, True, config)
    found = await repository.get(session, user_id, body.session_id)
    if found is None:
        raise NotFound("Chat session")
    if found.assistant_id != assistant.id:
        raise Conflict("This chat session belongs to another assistant")
    history = await repository.recent_messages(session, found.id, 2 * HISTORY_TURNS)
    return Turn(found, False, config, history)


async def answer(settings: Settings, turn: Turn, text: str) -> str:
    """The assistant's reply to `text`, given the session's history."""
    try:
        from pipecat.processors.aggregators.llm_context import LLMContext

        from outdial.voice.providers import VoiceConfigError, llm_for
    except ImportError:
        raise VoiceExtraMissing(
            "Chat needs the voice extra: pip install 'outdial[voice]'"
        ) from None
    try:
        llm = llm_for(settings, turn.config)
    except VoiceConfigError as exc:
        raise Invalid(
            ["body", "assistant_id"], f"the assistant's LLM cannot be used: {exc}"
        ) from None
    messages = [
        {"role": "system", "content": turn.config["system_prompt"]},
        *({"role": role, "content": said} for role, said in turn.history),
        {"role": "user", "content": text},
    ]
    try:
        async with asyncio.timeout(REPLY_TIMEOUT_SECONDS):
            reply = await llm.run_inference(LLMContext(messages))  # type: ignore[arg-type]
    except Exception as exc:  # any vendor failure is the LLM's, not the request's
        log.warning("chat reply failed for %s: %s", turn.chat.id, exc)
        raise LLMUnavailable("The assistant's LLM did not answer") from exc
    if not reply or not reply.strip():
        raise LLMUnavailable("The assistant's LLM answered nothing")
    return str(reply).strip()


async def chat(
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    user_id: str,
    body: ChatRequest,
) -> tuple[str, str]:
    """One exchange: (the assistant's reply, the session id)."""
    turn = await prepare(session, user_id, body)
    await session.commit()  # nothing is held while the LLM answers
    reply = await answer(settings, turn, body.input)
    async with write_transaction(sessionmaker) as writer:
        await repository.add_turn(writer, turn.chat, body.input, reply, new=turn.new)
    return reply, turn.chat.id


async def get(
    session: AsyncSession, user_id: str, session_id: str
) -> tuple[ChatSession, list[Any], int]:
    """A session of this user with all its messages and its turn count."""
    found = await repository.get(session, user_id, session_id)
    if found is None:
        raise NotFound("Chat session")
    rows = list(await repository.messages(session, found.id))
    return found, rows, sum(1 for row in rows if row.role == "assistant")
