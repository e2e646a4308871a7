"""The call action notice: a POST to `call_actions.webhook_url` as the call is acted on.

Sent when the assistant hangs up, transfers or records an opt-out (its tools), and when the
API hangs a call up or transfers it (`PATCH /calls/{id}`). It is a notice, not a veto: the
answer is not read, and a failure or no answer within `webhook_timeout_ms` is logged and
the action goes ahead. `send` never raises and never takes longer than the timeout.

The notice is not signed: an arbitrary URL has no secret of its own (docs/decisions.md).
Anything that must be trusted belongs to the signed lifecycle webhooks (docs/webhooks.md).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from outdial.models import utcnow
from outdial.schemas import format_timestamp
from outdial.voice.transfer import Transfer
from outdial.webhook import signing

log = logging.getLogger("outdial.voice")

EVENT = "call.action"
EVENT_TYPE_HEADER = "X-Outdial-Event-Type"
DEFAULT_TIMEOUT_MS = 3500
ASSISTANT = "assistant"  # who acted: the assistant's tool…
API = "api"  # …or PATCH /calls/{id}
HANG_UP = "hang_up"  # the actions' names, as the assistant's tools (`voice/actions.py`)
TRANSFER = "transfer"

# Tells the account's URL the assistant is about to take `action` (bound to one call).
Notice = Callable[[str], Awaitable[None]]


@dataclass(frozen=True)
class NoticeTarget:
    """Where a call's notices go, and how long each may take (seconds)."""

    url: str
    timeout: float


def target_of(config: dict[str, Any] | None) -> NoticeTarget | None:
    """The call's notice target from its resolved configuration; None without a webhook_url."""
    actions = (config or {}).get("call_actions") or {}
    url = actions.get("webhook_url")
    if not url:
        return None
    timeout_ms = actions.get("webhook_timeout_ms") or DEFAULT_TIMEOUT_MS
    return NoticeTarget(str(url), float(timeout_ms) / 1000)


def body(call_id: str, action: str, source: str, transfer: Transfer | None = None) -> bytes:
    """The notice's JSON: `to` and `mode` only for a transfer."""
    notice: dict[str, Any] = {"event": EVENT, "call_id": call_id, "action": action}
    if transfer is not None:
        notice.update(to=transfer.to, mode=transfer.mode)
    notice.update(source=source, at=format_timestamp(utcnow()))
    return json.dumps(notice, separators=(",", ":")).encode()


def _where(url: str) -> str:
    """The URL's host, for logs: a path or query string may hold the account's tokens."""
    try:
        return urlsplit(url).hostname or "?"
    except ValueError:
        return "?"


async def send(
    client: httpx.AsyncClient,
    target: NoticeTarget,
    call_id: str,
    action: str,
    source: str,
    transfer: Transfer | None = None,
) -> bool:
    """POST the notice; True for a 2xx answer within the timeout. Never raises."""
    content = body(call_id, action, source, transfer)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": signing.USER_AGENT,
        EVENT_TYPE_HEADER: EVENT,
    }
    try:
        async with asyncio.timeout(target.timeout):
            response = await client.post(target.url, content=content, headers=headers)
    except (TimeoutError, httpx.TimeoutException):
        failure = f"no answer within {target.timeout:g} s"
    except Exception as exc:  # whatever the URL does, the action goes ahead
        failure = type(exc).__name__
    else:
        if 200 <= response.status_code < 300:
            return True
        failure = f"HTTP {response.status_code}"
    log.warning(
        "call %s: the %s notice to %s failed (%s); acting all the same",
        call_id,
        action,
        _where(target.url),
        failure,
    )
    return False


def for_call(
    client: httpx.AsyncClient,
    config: dict[str, Any],
    call_id: str,
    transfer: Transfer | None = None,
) -> Notice | None:
    """The assistant's notices for one call (None without a webhook_url); `transfer` is
    where its `transfer` tool sends the person."""
    target = target_of(config)
    if target is None:
        return None

    async def notify(action: str) -> None:
        moving = transfer if action == TRANSFER else None
        await send(client, target, call_id, action, ASSISTANT, moving)

    return notify
