"""Calls: read them, place a single one, label or hang one up."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from outdial.call import repository
from outdial.call.schemas import CallCreate, CallUpdate
from outdial.campaign.service import amd_timeout
from outdial.dialer import control
from outdial.dialer.claim import DialJob
from outdial.do_not_call import service as do_not_call
from outdial.errors import Conflict, Invalid, NotFound
from outdial.ids import new_id
from outdial.models import Assistant, Call, PhoneNumber, utcnow
from outdial.models.call import LIVE_STATUSES
from outdial.phones import InvalidPhoneNumber, normalize_e164
from outdial.repository import get_owned
from outdial.schemas import Page
from outdial.secrets_store import CallSecrets
from outdial.telephony.registry import Carriers
from outdial.voice import notice
from outdial.voice import transfer as voice_transfer
from outdial.voice.transfer import Transfer


async def get(session: AsyncSession, user_id: str, call_id: str) -> Call:
    call = await get_owned(session, Call, user_id, call_id)
    if call is None:
        raise NotFound("Call")
    return call


async def page(
    session: AsyncSession,
    user_id: str,
    page: Page,
    *,
    campaign_id: str | None = None,
    status: str | None = None,
) -> tuple[Sequence[Call], int]:
    return await repository.page(session, user_id, page, campaign_id=campaign_id, status=status)


async def create(
    session: AsyncSession,
    user_id: str,
    body: CallCreate,
    region: str,
    lease: timedelta,
    call_secrets: CallSecrets,
    daily_cap: int | None = None,
) -> DialJob:
    """Open the call row (the dial happens after commit); 409 if that person is on a call,
    on the do-not-call list, or was called `daily_cap` times in the last 24 hours."""
    number = await get_owned(session, PhoneNumber, user_id, body.phone_number_id)
    if number is None:
        raise NotFound("Phone number")
    assistant_id = body.assistant_id if body.assistant_id is not None else number.assistant_id
    if assistant_id is None:
        raise Invalid(
            ["body", "assistant_id"], "assistant_id is required: the phone number has no assistant"
        )
    assistant = await get_owned(session, Assistant, user_id, assistant_id)
    if assistant is None:
        raise NotFound("Assistant")
    try:
        to_number = normalize_e164(body.to_number, region)
    except InvalidPhoneNumber as exc:
        raise Invalid(["body", "to_number"], str(exc)) from None
    now = utcnow()
    await _check_allowed(session, user_id, to_number, now, daily_cap)
    call_id = new_id("call")
    secret, secret_hash = call_secrets.new(call_id, number.provider, number.id)
    call = Call(
        id=call_id,
        user_id=user_id,
        phone_number_id=number.id,
        assistant_id=assistant_id,
        provider=number.provider,
        direction="outbound",
        to_number=to_number,
        from_number=number.phone_number,
        status="queued",
        label=body.label,
        secret_hash=secret_hash,
        lease_owner="api",
        lease_expires_at=now + lease,
    )
    session.add(call)
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict(f"A call to {to_number} is already live") from None
    return DialJob(call.id, None, number, to_number, secret, now, amd_timeout(None, assistant))


async def _check_allowed(
    session: AsyncSession, user_id: str, to_number: str, now: datetime, daily_cap: int | None
) -> None:
    blocked = await do_not_call.blocked_numbers(
        session, user_id, [to_number], now, daily_cap=daily_cap
    )
    if blocked.get(to_number) == do_not_call.DNC:
        raise Conflict(f"{to_number} is on the do-not-call list")
    if blocked.get(to_number) == do_not_call.DAILY_CAP:
        raise Conflict(
            f"{to_number} was already called {daily_cap} times in the last 24 hours, "
            "the most this account may call one number"
        )


@dataclass(frozen=True)
class Action:
    """What PATCH /calls/{id} asks the provider to do once its transaction has committed."""

    hang_up: bool
    transfer: Transfer | None
    announce: notice.NoticeTarget | None  # the assistant's call action notice, if any


async def update(
    session: AsyncSession, user_id: str, call_id: str, body: CallUpdate, region: str
) -> tuple[Call, Action | None]:
    """Label changes; `hangup` and `transfer` need a live call (the provider acts after
    commit: `carry_out`). For a transfer, where the call goes (`to`, else the assistant's
    `call_actions.transfer_number`) and how (`mode`, else its `transfer_mode`)."""
    call = await get(session, user_id, call_id)
    target = None
    if body.action == "transfer":
        if call.status != "in_progress" or call.answered_by == "machine":
            raise Conflict(
                f"Call is {call.status}: only a live call answered by a person can be transferred"
            )
        target = await _transfer_target(session, call, body, region)
    if body.action == "hangup" and call.status not in LIVE_STATUSES:
        raise Conflict(f"Call is {call.status}: only a live call can be hung up")
    if "label" in body.model_fields_set:
        call.label = body.label
    await session.flush()
    if body.action is None:
        return call, None
    announce = notice.target_of(await configuration(session, call))
    return call, Action(body.action == "hangup", target, announce)


async def carry_out(
    action: Action,
    call_id: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    carriers: Carriers,
    http_client: httpx.AsyncClient,
    public_base_url: str,
) -> None:
    """Ask the provider to hang up or transfer. The call action notice goes out beside the
    request (not before: the account asked for the action itself) and is waited for, at
    most its timeout."""
    sending = None
    if action.announce is not None:
        kind = notice.TRANSFER if action.transfer is not None else notice.HANG_UP
        sent = notice.send(http_client, action.announce, call_id, kind, notice.API, action.transfer)
        sending = asyncio.ensure_future(sent)
    try:
        if action.hang_up:
            await control.hang_up(sessionmaker, carriers, [call_id])
        if action.transfer is not None:
            await voice_transfer.request(
                sessionmaker, carriers, public_base_url, call_id, action.transfer
            )
    finally:
        if sending is not None:
            await sending


async def configuration(session: AsyncSession, call: Call) -> dict[str, Any] | None:
    """The call's resolved configuration, or its assistant's before the conversation has
    stored one."""
    if call.assistant_config is not None:
        return dict(call.assistant_config)
    if call.assistant_id is None:
        return None
    assistant = await session.get(Assistant, call.assistant_id)
    return dict(assistant.config) if assistant is not None else None


async def _transfer_target(
    session: AsyncSession, call: Call, body: CallUpdate, region: str
) -> Transfer:
    """The call's resolved configuration decides what the request leaves out."""
    actions = (await configuration(session, call) or {}).get("call_actions") or {}
    if body.to is not None:
        try:
            to = normalize_e164(body.to, region)
        except InvalidPhoneNumber as exc:
            raise Invalid(["body", "to"], str(exc)) from None
    else:
        default = voice_transfer.e164(actions.get("transfer_number"))
        if default is None:
            raise Invalid(
                ["body", "to"],
                "to is required: the assistant has no call_actions.transfer_number in E.164",
            )
        to = default
    warm = actions.get("transfer_mode") == voice_transfer.WARM
    mode = body.mode or (voice_transfer.WARM if warm else voice_transfer.COLD)
    return Transfer(to, mode)
