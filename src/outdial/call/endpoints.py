from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import FileResponse

from outdial.auth.dependencies import Session, UserId
from outdial.call import recording, service
from outdial.call.schemas import Call, CallCreate, CallStatus, CallUpdate
from outdial.database import write_transaction
from outdial.dialer.sender import Sender
from outdial.dialer.worker import dialer_settings
from outdial.errors import NotFound
from outdial.idempotency import service as idempotency_service
from outdial.idempotency.dependencies import Idempotency
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


@router.get(
    "/{call_id}/recording",
    response_class=FileResponse,
    responses={
        200: {
            "description": "The call's recording.",
            "content": {
                media: {"schema": {"type": "string", "format": "binary"}}
                for media in recording.MEDIA_TYPES.values()
            },
        },
        404: {"description": "No such call, or it has no recording in that form."},
    },
)
async def get_recording(
    call_id: str,
    request: Request,
    session: Session,
    user_id: UserId,
    channels: Annotated[recording.Channels, Query()] = "mono",
    format: Annotated[recording.Format, Query()] = "wav",
) -> FileResponse:
    """The call's audio: caller and assistant mixed (`mono`) or caller left, assistant right
    (`stereo`), as WAV or MP3. Recorded when the call's assistant has `recording.enabled`;
    the call's recording URLs point here."""
    call = await service.get(session, user_id, call_id)
    if getattr(call, recording.COLUMNS[(channels, format)]) is None:
        raise NotFound("Recording")
    data_dir = request.app.state.settings.data_dir
    path = recording.file_path(data_dir, call.user_id, call.id, channels, format)
    if not path.is_file():
        raise NotFound("Recording")
    suffix = "-stereo" if channels == "stereo" else ""
    return FileResponse(
        path, media_type=recording.MEDIA_TYPES[format], filename=f"{call.id}{suffix}.{format}"
    )


@router.post("", response_model=Call)
async def create_call(
    body: CallCreate, request: Request, session: Session, user_id: UserId, idempotency: Idempotency
) -> Call | Response:
    """Place one call now; the response shows it once the provider has taken it (or refused)."""
    if (first := await idempotency_service.claim(session, idempotency)) is not None:
        return first
    settings = dialer_settings(request.app.state.settings)
    region = request.app.state.settings.default_region
    daily_cap = request.app.state.settings.max_calls_per_number_per_day
    secrets = request.app.state.carriers.call_secrets
    job = await service.create(session, user_id, body, region, settings.lease, secrets, daily_cap)
    await session.commit()  # the call and its key's claim: a retry from now on dials nothing
    sessionmaker = request.app.state.sessionmaker
    await Sender(sessionmaker, request.app.state.carriers, settings).send(job)
    session.expire_all()
    call = to_schema(await service.get(session, user_id, job.call_id))
    if idempotency is None:
        return call
    async with write_transaction(sessionmaker) as writer:
        return await idempotency_service.remember(writer, idempotency, call)


@router.patch("/{call_id}", response_model=Call)
async def update_call(
    call_id: str, body: CallUpdate, request: Request, session: Session, user_id: UserId
) -> Call:
    """Label a call; hang a live call up; or transfer a live call answered by a person to
    `to` (default: the assistant's `call_actions.transfer_number`), `cold` or `warm`."""
    state = request.app.state
    region = state.settings.default_region
    call, action = await service.update(session, user_id, call_id, body, region)
    await session.commit()
    if action is not None:
        base = state.settings.resolved_public_base_url
        await service.carry_out(
            action, call.id, state.sessionmaker, state.carriers, state.http_client, base
        )
    return to_schema(call)
