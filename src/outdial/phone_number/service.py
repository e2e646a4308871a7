"""Caller numbers: credentials are checked for shape, sealed, and never shown again."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from outdial.errors import Conflict, Invalid, NotFound
from outdial.ids import new_id
from outdial.models import Assistant, Campaign, PhoneNumber, utcnow
from outdial.phone_number.schemas import CREDENTIAL_FIELDS, PhoneNumberCreate, PhoneNumberUpdate
from outdial.phones import InvalidPhoneNumber, normalize_e164
from outdial.repository import get_owned, page_of
from outdial.schemas import Page
from outdial.secrets_store import CredentialBox

_TWILIO_SID = re.compile(r"^AC[0-9a-fA-F]{32}$")


def check_credentials(provider: str, given: dict[str, Any]) -> dict[str, str]:
    """The provider's credentials from `given`; 422 naming a missing or misplaced field."""
    needed = CREDENTIAL_FIELDS[provider]
    for field in ("account_sid", "auth_id", "auth_token"):
        value = given.get(field)
        if field not in needed and value is not None:
            raise Invalid(["body", field], f"{field} is not used by provider {provider}")
        if field in needed and (value is None or not str(value).strip()):
            raise Invalid(["body", field], f"{field} is required when provider is {provider}")
    if provider == "twilio" and not _TWILIO_SID.match(given["account_sid"].strip()):
        raise Invalid(["body", "account_sid"], "account_sid must be 'AC' followed by 32 hex digits")
    return {field: str(given[field]).strip() for field in needed}


async def get(session: AsyncSession, user_id: str, phone_number_id: str) -> PhoneNumber:
    number = await get_owned(session, PhoneNumber, user_id, phone_number_id)
    if number is None:
        raise NotFound("Phone number")
    return number


async def _check_assistant(session: AsyncSession, user_id: str, assistant_id: str | None) -> None:
    if assistant_id is not None and not await get_owned(session, Assistant, user_id, assistant_id):
        raise NotFound("Assistant")


async def _check_unique(session: AsyncSession, user_id: str, e164: str) -> None:
    query = select(PhoneNumber.id).where(
        PhoneNumber.user_id == user_id,
        PhoneNumber.phone_number == e164,
        PhoneNumber.deleted_at.is_(None),
    )
    if (await session.scalars(query)).first():
        raise Conflict(f"Phone number {e164} is already connected")


async def create(
    session: AsyncSession,
    box: CredentialBox,
    user_id: str,
    body: PhoneNumberCreate,
    default_region: str,
) -> PhoneNumber:
    try:
        e164 = normalize_e164(body.phone_number, default_region)
    except InvalidPhoneNumber as exc:
        raise Invalid(["body", "phone_number"], str(exc)) from None
    credentials = check_credentials(body.provider, body.model_dump())
    await _check_assistant(session, user_id, body.assistant_id)
    await _check_unique(session, user_id, e164)
    number = PhoneNumber(
        id=new_id("pn"),
        user_id=user_id,
        provider=body.provider,
        phone_number=e164,
        label=body.label,
        calls_per_second=body.calls_per_second or 1.0,
        assistant_id=body.assistant_id,
        credentials=box.seal(credentials),
    )
    session.add(number)
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict(f"Phone number {e164} is already connected") from None
    return number


async def update(
    session: AsyncSession,
    box: CredentialBox,
    user_id: str,
    phone_number_id: str,
    body: PhoneNumberUpdate,
) -> PhoneNumber:
    number = await get(session, user_id, phone_number_id)
    changes = body.model_dump(exclude_unset=True)
    if "assistant_id" in changes:
        await _check_assistant(session, user_id, changes["assistant_id"])
        number.assistant_id = changes["assistant_id"]
    if "label" in changes:
        number.label = changes["label"]
    if changes.get("calls_per_second") is not None:
        number.calls_per_second = changes["calls_per_second"]
    secret_fields = {"account_sid", "auth_token", "auth_id"} & changes.keys()
    if secret_fields:
        merged = {**box.open(number.credentials), **{f: changes[f] for f in secret_fields}}
        number.credentials = box.seal(check_credentials(number.provider, merged))
    number.updated_at = utcnow()
    await session.flush()
    return number


async def delete(session: AsyncSession, user_id: str, phone_number_id: str) -> None:
    number = await get(session, user_id, phone_number_id)
    query = select(Campaign.id).where(
        Campaign.phone_number_id == number.id, Campaign.status != "completed"
    )
    if (await session.scalars(query.limit(1))).first():
        raise Conflict("Phone number is used by a campaign that has not completed")
    number.deleted_at = utcnow()
    await session.flush()


async def page(
    session: AsyncSession, user_id: str, page: Page
) -> tuple[Sequence[PhoneNumber], int]:
    query = select(PhoneNumber).where(
        PhoneNumber.user_id == user_id, PhoneNumber.deleted_at.is_(None)
    )
    return await page_of(session, query, page, PhoneNumber.created_at.desc(), PhoneNumber.id)
