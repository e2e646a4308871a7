from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Request, Response, UploadFile
from fastapi.responses import PlainTextResponse

from outdial.auth.dependencies import Session, UserId
from outdial.errors import Invalid, PayloadTooLarge
from outdial.idempotency import service as idempotency_service
from outdial.idempotency.dependencies import Idempotency
from outdial.models import RecipientList as ListRow
from outdial.models import RecipientListRow as RowRow
from outdial.recipient_list import service
from outdial.recipient_list.csv_import import template_csv
from outdial.recipient_list.schemas import ImportReport, RecipientList, RecipientListRow
from outdial.schemas import Page, check_storable, page_params, set_total

router = APIRouter(prefix="/recipient-lists", tags=["recipient lists"])


def to_schema(row: ListRow, report: ImportReport | None = None) -> RecipientList:
    return RecipientList(
        id=row.id,
        name=row.name,
        row_count=row.row_count,
        created_at=row.created_at,
        updated_at=row.updated_at,
        last_import=report,
    )


def _checked_file(request: Request, file: UploadFile | None) -> UploadFile | None:
    if file is None:
        return None
    limit = request.app.state.settings.max_upload_bytes
    if file.size is not None and file.size > limit:
        raise PayloadTooLarge(f"file is {file.size} bytes; the limit is {limit} bytes")
    return file


def _checked_name(name: str | None) -> str | None:
    try:
        return check_storable(name, "name")
    except ValueError as exc:
        raise Invalid(["body", "name"], str(exc)) from None


class CSVResponse(PlainTextResponse):
    media_type = "text/csv"


@router.get("/template", response_class=CSVResponse)
async def recipient_list_template(user_id: UserId) -> CSVResponse:
    """The CSV header that `use_template=true` uploads are checked against."""
    return CSVResponse(template_csv())


@router.post("", response_model=RecipientList)
async def create_recipient_list(
    request: Request,
    session: Session,
    user_id: UserId,
    idempotency: Idempotency,
    name: Annotated[str | None, Form(max_length=200)] = None,
    file: Annotated[UploadFile | None, File()] = None,
    use_template: Annotated[bool, Form()] = False,
) -> RecipientList | Response:
    if (first := await idempotency_service.claim(session, idempotency)) is not None:
        return first
    upload = _checked_file(request, file)
    recipient_list, report = await service.create(
        session,
        user_id,
        _checked_name(name),
        upload.file if upload else None,
        use_template=use_template,
        region=request.app.state.settings.default_region,
    )
    return await idempotency_service.remember(
        session, idempotency, to_schema(recipient_list, report)
    )


@router.post("/{recipient_list_id}/recipients/upload-csv", response_model=RecipientList)
async def upload_recipient_list_csv(
    recipient_list_id: str,
    request: Request,
    session: Session,
    user_id: UserId,
    file: Annotated[UploadFile, File()],
    replace: Annotated[bool, Form()] = True,
    use_template: Annotated[bool, Form()] = False,
) -> RecipientList:
    upload = _checked_file(request, file)
    assert upload is not None
    recipient_list, report = await service.upload(
        session,
        user_id,
        recipient_list_id,
        upload.file,
        replace=replace,
        use_template=use_template,
        region=request.app.state.settings.default_region,
    )
    return to_schema(recipient_list, report)


@router.get("", response_model=list[RecipientList])
async def list_recipient_lists(
    session: Session,
    user_id: UserId,
    response: Response,
    page: Annotated[Page, Depends(page_params)],
) -> list[RecipientList]:
    rows, total = await service.page(session, user_id, page)
    set_total(response, total)
    return [to_schema(row) for row in rows]


@router.get("/{recipient_list_id}", response_model=RecipientList)
async def get_recipient_list(
    recipient_list_id: str, session: Session, user_id: UserId
) -> RecipientList:
    return to_schema(await service.get(session, user_id, recipient_list_id))


def row_schema(row: RowRow) -> RecipientListRow:
    return RecipientListRow(
        id=f"rlr_{row.id}",
        position=row.position,
        phone_number=row.phone_number,
        metadata=row.row_metadata,
    )


@router.get("/{recipient_list_id}/recipients", response_model=list[RecipientListRow])
async def list_recipient_list_rows(
    recipient_list_id: str,
    session: Session,
    user_id: UserId,
    response: Response,
    page: Annotated[Page, Depends(page_params)],
) -> list[RecipientListRow]:
    rows, total = await service.rows_page(session, user_id, recipient_list_id, page)
    set_total(response, total)
    return [row_schema(row) for row in rows]


@router.delete("/{recipient_list_id}", status_code=204)
async def delete_recipient_list(
    recipient_list_id: str, session: Session, user_id: UserId
) -> Response:
    await service.delete(session, user_id, recipient_list_id)
    return Response(status_code=204)
