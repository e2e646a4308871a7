from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from outdial.auth.dependencies import Session, UserId
from outdial.call import service
from outdial.call.schemas import Call, CallStatus
from outdial.models import Call as CallRow
from outdial.schemas import Page, page_params, set_total

router = APIRouter(prefix="/calls", tags=["calls"])


def to_schema(row: CallRow) -> Call:
    data = {column: getattr(row, column) for column in Call.model_fields if hasattr(row, column)}
    data["recipient_id"] = f"rcp_{row.recipient_id}" if row.recipient_id is not None else None
    data["timestamp"] = row.created_at
    return Call.model_validate(data)


@router.get("", response_model=list[Call])
async def list_calls(
    session: Session,
    user_id: UserId,
    response: Response,
    page: Annotated[Page, Depends(page_params)],
    campaign_id: Annotated[str | None, Query(max_length=64)] = None,
    status: Annotated[CallStatus | None, Query()] = None,
) -> list[Call]:
    rows, total = await service.page(session, user_id, page, campaign_id=campaign_id, status=status)
    set_total(response, total)
    return [to_schema(row) for row in rows]


@router.get("/{call_id}", response_model=Call)
async def get_call(call_id: str, session: Session, user_id: UserId) -> Call:
    return to_schema(await service.get(session, user_id, call_id))
