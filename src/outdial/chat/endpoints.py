from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from outdial.auth.dependencies import Session, UserId
from outdial.chat import service
from outdial.chat.schemas import ChatMessage, ChatRequest, ChatResponse, ChatSession

router = APIRouter(prefix="/chat", tags=["chat"])

_ERROR = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
FAILURES: dict[int | str, dict[str, Any]] = {
    502: {"description": "The assistant's LLM failed or did not answer in 30 s.", **_ERROR},
    503: {"description": "The server runs without the voice extra (no LLM services).", **_ERROR},
}


@router.post("", response_model=ChatResponse, responses=FAILURES)
async def chat_with_assistant(
    body: ChatRequest, request: Request, session: Session, user_id: UserId
) -> ChatResponse:
    """Send the user's `input` to the assistant; omit `session_id` to start a new session
    (its id comes back), pass it back to continue. Another assistant's session is a 409."""
    state = request.app.state
    reply, session_id = await service.chat(
        session, state.sessionmaker, state.settings, user_id, body
    )
    return ChatResponse(output_type="text", output=reply, session_id=session_id)


@router.get("/{session_id}", response_model=ChatSession)
async def get_chat_session(session_id: str, session: Session, user_id: UserId) -> ChatSession:
    """A session's messages, oldest first, and its turn count."""
    found, messages, turns = await service.get(session, user_id, session_id)
    return ChatSession(
        id=found.id,
        assistant_id=found.assistant_id,
        turns=turns,
        created_at=found.created_at,
        updated_at=found.updated_at,
        messages=[ChatMessage.model_validate(row) for row in messages],
    )
