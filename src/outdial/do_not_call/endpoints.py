from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Request, Response, UploadFile

from outdial.auth.dependencies import Session, UserId
from outdial.do_not_call import importer, service
from outdial.do_not_call.schemas import (
    MAX_REASON,
    DoNotCallAdd,
    DoNotCallAdded,
    DoNotCallEntry,
    DoNotCallImport,
)
from outdial.errors import Invalid, PayloadTooLarge
from outdial.schemas import Page, check_storable, page_params, set_total

router = APIRouter(prefix="/do-not-call", tags=["do not call"])


def _region(request: Request) -> str:
    return str(request.app.state.settings.default_region)


@router.post("", response_model=DoNotCallAdded)
async def add_to_do_not_call(
    body: DoNotCallAdd, request: Request, session: Session, user_id: UserId
) -> DoNotCallAdded:
    """Put one number or many on the list; a number already listed keeps its entry."""
    return await service.add(session, user_id, body, _region(request))


@router.post("/upload-csv", response_model=DoNotCallImport)
async def upload_do_not_call_csv(
    request: Request,
    session: Session,
    user_id: UserId,
    file: Annotated[UploadFile, File()],
    reason: Annotated[str | None, Form(max_length=MAX_REASON)] = None,
) -> DoNotCallImport:
    """Add the numbers of a CSV (phone column as in recipient lists; optional `reason` column)."""
    limit = request.app.state.settings.max_upload_bytes
    if file.size is not None and file.size > limit:
        raise PayloadTooLarge(f"file is {file.size} bytes; the limit is {limit} bytes")
    try:
        check_storable(reason, "reason")
    except ValueError as exc:
        raise Invalid(["body", "reason"], str(exc)) from None
    return await importer.import_csv(
        session, user_id, file.file, reason=reason, region=_region(request)
    )


@router.get("", response_model=list[DoNotCallEntry])
async def list_do_not_call(
    session: Session,
    user_id: UserId,
    response: Response,
    page: Annotated[Page, Depends(page_params)],
) -> list[DoNotCallEntry]:
    rows, total = await service.page(session, user_id, page)
    set_total(response, total)
    return [DoNotCallEntry.model_validate(row) for row in rows]


@router.get("/{phone_number}", response_model=DoNotCallEntry)
async def get_do_not_call_entry(
    phone_number: str, request: Request, session: Session, user_id: UserId
) -> DoNotCallEntry:
    """The entry of one number (E.164, `+` may be sent as `%2B`); 404 when it is not listed."""
    entry = await service.get(session, user_id, phone_number, _region(request))
    return DoNotCallEntry.model_validate(entry)


@router.delete("/{phone_number}", status_code=204)
async def remove_from_do_not_call(
    phone_number: str, request: Request, session: Session, user_id: UserId
) -> Response:
    await service.remove(session, user_id, phone_number, _region(request))
    return Response(status_code=204)
