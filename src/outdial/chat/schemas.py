from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator

from outdial.schemas import RequestModel, ResponseModel, Timestamp

MAX_INPUT = 4000  # characters of one user message


class ChatRequest(RequestModel):
    """Upstream's body: `assistant_id`, `input`; `session_id` continues a session."""

    assistant_id: str = Field(max_length=200)
    input: str = Field(max_length=MAX_INPUT, description="What the user says; not blank.")
    session_id: str | None = Field(
        default=None,
        max_length=200,
        description="A session this user started with this assistant; omit to start one.",
    )

    @field_validator("input")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("input must not be blank")
        return value


class ChatResponse(BaseModel):
    """Upstream's response, exactly: the reply, its type (always `text` here), the session."""

    output_type: str = Field(description="Always `text`.")
    output: str = Field(description="The assistant's reply.")
    session_id: str


class ChatMessage(ResponseModel):
    role: Literal["user", "assistant"]
    text: str
    created_at: Timestamp


class ChatSession(ResponseModel):
    """A session and its messages, oldest first."""

    id: str
    assistant_id: str
    turns: int = Field(description="Replies the assistant gave in this session.")
    created_at: Timestamp
    updated_at: Timestamp
    messages: list[ChatMessage]
