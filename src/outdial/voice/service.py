"""Voice runtime steps that touch the database, each in its own short transaction."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from outdial.database import write_transaction
from outdial.dialer import control
from outdial.do_not_call import service as do_not_call
from outdial.models import Call
from outdial.telephony.registry import Carriers
from outdial.voice import repository
from outdial.voice.config import resolve
from outdial.webhook import events as webhook_events

if TYPE_CHECKING:
    from outdial.voice.pipeline import Conversation

log = logging.getLogger("outdial.voice")

SUMMARY_TIMEOUT_SECONDS = 30.0


async def resolve_call(session: AsyncSession, call_id: str) -> dict[str, Any] | None:
    """The call's resolved configuration, read only (None: no such call)."""
    call = await session.get(Call, call_id)
    if call is None:
        return None
    return resolve(await repository.call_context(session, call))


async def resolve_for_call(session: AsyncSession, call_id: str) -> dict[str, Any] | None:
    """Resolve the call's configuration and store it on the call."""
    config = await resolve_call(session, call_id)
    if config is not None:
        await repository.store_config(session, call_id, config)
    return config


async def opt_out(sessionmaker: async_sessionmaker[AsyncSession], call_id: str) -> bool:
    """The person opted out during the call: list the number for the call's account.

    True when the number was not listed yet. The call's outcome is left to its end.
    """
    async with write_transaction(sessionmaker) as session:
        call = await session.get(Call, call_id)
        if call is None:
            return False
        return await do_not_call.add_opt_out(session, call.user_id, call.to_number, call_id=call.id)


async def hang_up(
    sessionmaker: async_sessionmaker[AsyncSession], carriers: Carriers, call_id: str
) -> bool:
    """The assistant ended the conversation: have the provider end the call (its final
    callback finalises it, as for any call). False when there was nothing to hang up."""
    return bool(await control.hang_up(sessionmaker, carriers, [call_id]))


async def summarise(
    llm: Any, transcript: list[dict[str, Any]], config: dict[str, Any]
) -> str | None:
    """The call summary: the call's LLM, `call_summary.prompt` as the instruction, the
    transcript as the conversation. None when it fails or takes over 30 s."""
    from pipecat.processors.aggregators.llm_context import LLMContext

    context = LLMContext([{"role": turn["role"], "content": turn["text"]} for turn in transcript])
    prompt = config["call_summary"]["prompt"]
    try:
        async with asyncio.timeout(SUMMARY_TIMEOUT_SECONDS):
            summary = await llm.run_inference(context, system_instruction=prompt)
    except Exception as exc:  # a summary is worth having, not worth failing the call for
        log.warning("summary failed: %s", exc)
        return None
    return summary.strip() if summary else None


async def record(
    sessionmaker: async_sessionmaker[AsyncSession],
    call_id: str,
    conversation: Conversation,
    summary: str | None,
    recordings: dict[str, str | None] | None = None,
) -> None:
    """Store the conversation (and the recording URLs, when recorded) on the call."""
    async with write_transaction(sessionmaker) as session:
        await repository.store_conversation(
            session,
            call_id,
            transcript=conversation.transcript,
            user_messages=conversation.count("user"),
            agent_messages=conversation.count("assistant"),
            summary=summary,
            per_turn_latency=conversation.per_turn_latency,
            latency_metrics=_latency_metrics(conversation),
            **(recordings or {}),
        )
        await webhook_events.conversation_stored(session, call_id)


async def record_failure(
    sessionmaker: async_sessionmaker[AsyncSession], call_id: str, detail: str
) -> None:
    async with write_transaction(sessionmaker) as session:
        await repository.store_conversation(
            session, call_id, latency_metrics={"error": detail[:500]}
        )
        await repository.talk_ended(session, call_id, "error")
        await webhook_events.conversation_stored(session, call_id)


async def talk_ended(
    sessionmaker: async_sessionmaker[AsyncSession], call_id: str, reason: str
) -> None:
    """Say what ended the conversation, as soon as it has ended (before the summary): the
    call's ended_reason becomes it whether the provider's final callback came first or
    comes later (`repository.talk_ended`)."""
    async with write_transaction(sessionmaker) as session:
        await repository.talk_ended(session, call_id, reason)


def _latency_metrics(conversation: Conversation) -> dict[str, Any]:
    latencies = sorted(turn["ms"] for turn in conversation.per_turn_latency)
    metrics: dict[str, Any] = {
        "conversation_seconds": conversation.seconds,
        "turns": len(latencies),
    }
    if latencies:
        metrics["turn_latency_ms_median"] = latencies[len(latencies) // 2]
        metrics["turn_latency_ms_max"] = latencies[-1]
    return metrics
