from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from outdial.assistant import service
from outdial.assistant.schemas import Assistant, AssistantCreate, AssistantUpdate
from outdial.auth.dependencies import Session, UserId
from outdial.models import Assistant as AssistantRow
from outdial.schemas import Page, page_params, set_total

router = APIRouter(prefix="/assistants", tags=["assistants"])


def to_schema(row: AssistantRow) -> Assistant:
    return Assistant.model_validate(
        {
            **row.config,
            "id": row.id,
            "name": row.name,
            "created_at": row.created_at,
            "updated_at": row.updated_at,
        }
    )


@router.post("", response_model=Assistant)
async def create_assistant(body: AssistantCreate, session: Session, user_id: UserId) -> Assistant:
    return to_schema(await service.create(session, user_id, body))


@router.get("", response_model=list[Assistant])
async def list_assistants(
    session: Session,
    user_id: UserId,
    response: Response,
    page: Annotated[Page, Depends(page_params)],
) -> list[Assistant]:
    rows, total = await service.page(session, user_id, page)
    set_total(response, total)
    return [to_schema(row) for row in rows]


@router.get("/{assistant_id}", response_model=Assistant)
async def get_assistant(assistant_id: str, session: Session, user_id: UserId) -> Assistant:
    return to_schema(await service.get(session, user_id, assistant_id))


@router.put("/{assistant_id}", response_model=Assistant)
async def update_assistant(
    assistant_id: str, body: AssistantUpdate, session: Session, user_id: UserId
) -> Assistant:
    return to_schema(await service.update(session, user_id, assistant_id, body))


@router.delete("/{assistant_id}", status_code=204)
async def delete_assistant(assistant_id: str, session: Session, user_id: UserId) -> Response:
    await service.delete(session, user_id, assistant_id)
    return Response(status_code=204)
