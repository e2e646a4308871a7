from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from outdial.auth.dependencies import Session, UserId
from outdial.phone_number import service
from outdial.phone_number.schemas import PhoneNumber, PhoneNumberCreate, PhoneNumberUpdate
from outdial.schemas import Page, page_params, set_total
from outdial.secrets_store import CredentialBox

router = APIRouter(prefix="/phone-numbers", tags=["phone numbers"])


def credential_box(request: Request) -> CredentialBox:
    box: CredentialBox = request.app.state.credential_box
    return box


Box = Annotated[CredentialBox, Depends(credential_box)]


@router.post("", response_model=PhoneNumber)
async def create_phone_number(
    body: PhoneNumberCreate, request: Request, session: Session, user_id: UserId, box: Box
) -> PhoneNumber:
    region = request.app.state.settings.default_region
    return PhoneNumber.model_validate(await service.create(session, box, user_id, body, region))


@router.get("", response_model=list[PhoneNumber])
async def list_phone_numbers(
    session: Session,
    user_id: UserId,
    response: Response,
    page: Annotated[Page, Depends(page_params)],
) -> list[PhoneNumber]:
    rows, total = await service.page(session, user_id, page)
    set_total(response, total)
    return [PhoneNumber.model_validate(row) for row in rows]


@router.get("/{phone_number_id}", response_model=PhoneNumber)
async def get_phone_number(phone_number_id: str, session: Session, user_id: UserId) -> PhoneNumber:
    return PhoneNumber.model_validate(await service.get(session, user_id, phone_number_id))


@router.patch("/{phone_number_id}", response_model=PhoneNumber)
async def update_phone_number(
    phone_number_id: str, body: PhoneNumberUpdate, session: Session, user_id: UserId, box: Box
) -> PhoneNumber:
    number = await service.update(session, box, user_id, phone_number_id, body)
    return PhoneNumber.model_validate(number)


@router.delete("/{phone_number_id}", status_code=204)
async def delete_phone_number(phone_number_id: str, session: Session, user_id: UserId) -> Response:
    await service.delete(session, user_id, phone_number_id)
    return Response(status_code=204)
