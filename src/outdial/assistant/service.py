"""Assistants: create, read, update (merge), soft-delete."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from outdial.assistant import repository
from outdial.assistant.schemas import (
    NESTED_FIELDS,
    STORED,
    AssistantConfig,
    AssistantCreate,
    AssistantUpdate,
)
from outdial.errors import Conflict, NotFound
from outdial.ids import new_id
from outdial.models import Assistant, PhoneNumber, utcnow
from outdial.repository import get_owned
from outdial.schemas import Page
from outdial.validation import invalid_from


async def get(session: AsyncSession, user_id: str, assistant_id: str) -> Assistant:
    assistant = await get_owned(session, Assistant, user_id, assistant_id)
    if assistant is None:
        raise NotFound("Assistant")
    return assistant


async def _check_phone_number(
    session: AsyncSession, user_id: str, phone_number_id: str | None
) -> None:
    if phone_number_id is not None and not await get_owned(
        session, PhoneNumber, user_id, phone_number_id
    ):
        raise NotFound("Phone number")


async def create(session: AsyncSession, user_id: str, body: AssistantCreate) -> Assistant:
    config = AssistantConfig.model_validate(body.model_dump(exclude={"name"}))
    await _check_phone_number(session, user_id, config.phone_number_id)
    assistant = Assistant(
        id=new_id("asst"), user_id=user_id, name=body.name, config=config.model_dump(mode="json")
    )
    session.add(assistant)
    await session.flush()
    return assistant


def merge_config(stored: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """Top-level fields replace; nested objects merge key by key."""
    merged = dict(stored)
    for key, value in changes.items():
        if key in NESTED_FIELDS and isinstance(value, dict):
            merged[key] = {**stored.get(key, {}), **value}
        else:
            merged[key] = value
    return merged


async def update(
    session: AsyncSession, user_id: str, assistant_id: str, body: AssistantUpdate
) -> Assistant:
    assistant = await get(session, user_id, assistant_id)
    changes = body.model_dump(exclude_unset=True)
    name = changes.pop("name", None)
    try:
        config = AssistantConfig.model_validate(merge_config(assistant.config, changes))
    except ValidationError as exc:
        raise invalid_from(exc, ["body"]) from None
    # Only a new link is checked: a linked number deleted since must not block other edits.
    await _check_phone_number(session, user_id, changes.get("phone_number_id"))
    if name is not None:
        assistant.name = name
    assistant.config = config.model_dump(mode="json")
    assistant.updated_at = utcnow()
    await session.flush()
    return assistant


async def delete(session: AsyncSession, user_id: str, assistant_id: str) -> None:
    assistant = await get(session, user_id, assistant_id)
    if await repository.in_use_by_open_campaign(session, assistant.id):
        raise Conflict("Assistant is used by a campaign that has not completed")
    assistant.deleted_at = utcnow()
    await session.flush()


async def page(session: AsyncSession, user_id: str, page: Page) -> tuple[Sequence[Assistant], int]:
    return await repository.page(session, user_id, page)


def effective_config(assistant: Assistant) -> AssistantConfig:
    return AssistantConfig.model_validate(assistant.config, context=STORED)
