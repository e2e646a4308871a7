from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from outdial.auth.dependencies import Session, UserId
from outdial.models import PreDialCheck as CheckRow
from outdial.pre_dial import service
from outdial.pre_dial.schemas import PreDialCheck, PreDialCheckSet

router = APIRouter(prefix="/pre-dial-check", tags=["pre-dial check"])
# Without an id in the path the generic error documentation would leave this 404 out.
NONE_SET: dict[int | str, dict[str, Any]] = {
    404: {
        "description": "The account has no pre-dial check.",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
}


def to_schema(row: CheckRow, secret: str | None = None) -> PreDialCheck:
    return PreDialCheck(
        url=row.url,
        timeout_seconds=row.timeout_seconds,
        created_at=row.created_at,
        updated_at=row.updated_at,
        secret=secret,
    )


@router.put("", response_model=PreDialCheck)
async def set_pre_dial_check(
    body: PreDialCheckSet, request: Request, session: Session, user_id: UserId
) -> PreDialCheck:
    """Ask this URL before every campaign dial; a new check (or `rotate_secret`) shows its
    signing secret in this response only."""
    check, secret = await service.put(session, user_id, body, request.app.state.credential_box)
    return to_schema(check, secret)


@router.get("", response_model=PreDialCheck, responses=NONE_SET)
async def get_pre_dial_check(session: Session, user_id: UserId) -> PreDialCheck:
    return to_schema(await service.get(session, user_id))


@router.delete("", status_code=204, responses=NONE_SET)
async def delete_pre_dial_check(session: Session, user_id: UserId) -> Response:
    """Dial without asking from now on."""
    await service.delete(session, user_id)
    return Response(status_code=204)
