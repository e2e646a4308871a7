"""The pre-dial check: configure it, and ask it (fail-closed) before a dial.

The question is a signed POST (the webhook signature, with the check's own secret); the
answer `{"allow": true}` lets the dial go, `{"allow": false, "reason": "…"}` skips the
recipient. Anything else (no answer within the timeout, an error, a non-2xx status, a body
that is not such an object) skips it too, with a reason that says what went wrong: a check
that cannot answer never lets a call through.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from outdial.errors import NotFound
from outdial.models import PreDialCheck, utcnow
from outdial.pre_dial.schemas import PreDialCheckSet
from outdial.schemas import format_timestamp
from outdial.secrets_store import CredentialBox
from outdial.webhook import signing
from outdial.webhook.service import open_secret, seal_secret

REFUSED = "pre_dial"
FAILED = "pre_dial_check_failed"
MAX_ANSWER_BYTES = 64 * 1024
MAX_REASON = 200  # a recipient's status_reason


async def put(
    session: AsyncSession, user_id: str, body: PreDialCheckSet, box: CredentialBox
) -> tuple[PreDialCheck, str | None]:
    """Create or change the account's check; the secret when one was just issued."""
    check = await session.get(PreDialCheck, user_id, with_for_update=True)
    secret = None
    if check is None or body.rotate_secret:
        secret = signing.new_secret()
    if check is None:
        assert secret is not None
        check = PreDialCheck(user_id=user_id, secret=seal_secret(box, secret))
        session.add(check)
    elif secret is not None:
        check.secret = seal_secret(box, secret)
    check.url = body.url
    check.timeout_seconds = body.timeout_seconds
    check.updated_at = utcnow()
    await session.flush()
    return check, secret


async def get(session: AsyncSession, user_id: str) -> PreDialCheck:
    check = await session.get(PreDialCheck, user_id)
    if check is None:
        raise NotFound("Pre-dial check")
    return check


async def delete(session: AsyncSession, user_id: str) -> None:
    await session.delete(await get(session, user_id))
    await session.flush()


@dataclass(frozen=True)
class PreDialTarget:
    """Where and how to ask: the URL, the timeout, and the plain signing secret."""

    url: str
    timeout: float
    secret: str = field(repr=False)


async def target_of(
    session: AsyncSession, user_id: str, box: CredentialBox
) -> PreDialTarget | None:
    check = await session.get(PreDialCheck, user_id)
    if check is None:
        return None
    return PreDialTarget(check.url, check.timeout_seconds, open_secret(box, check.secret))


@dataclass(frozen=True)
class PreDialRequest:
    """What the account's URL is told about the dial it is asked to allow."""

    phone_number: str
    campaign_id: str | None = None
    recipient_id: str | None = None  # `rcp_…`, as the API shows it
    call_id: str | None = None
    attempt: int = 1
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PreDialDecision:
    allowed: bool
    reason: str | None = None  # why not: `pre_dial: <theirs>` or `pre_dial_check_failed: …`


def _refusal(kind: str, why: str) -> PreDialDecision:
    return PreDialDecision(False, f"{kind}: {why}"[:MAX_REASON])


def _body(request: PreDialRequest) -> bytes:
    question = {
        "type": "pre_dial.check",
        "phone_number": request.phone_number,
        "campaign_id": request.campaign_id,
        "recipient_id": request.recipient_id,
        "call_id": request.call_id,
        "attempt": request.attempt,
        "metadata": request.metadata,
        "requested_at": format_timestamp(utcnow()),
    }
    return json.dumps(question, ensure_ascii=False, separators=(",", ":")).encode()


def _decision(status: int, answer: bytes) -> PreDialDecision:
    if not 200 <= status < 300:
        return _refusal(FAILED, f"HTTP {status}")
    try:
        parsed = json.loads(answer)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("allow"), bool):
        return _refusal(FAILED, 'the answer is not JSON like {"allow": true}')
    if parsed["allow"]:
        return PreDialDecision(True)
    reason = parsed.get("reason")
    return _refusal(REFUSED, reason if isinstance(reason, str) and reason else "refused")


async def pre_dial_allows(
    client: httpx.AsyncClient, target: PreDialTarget, request: PreDialRequest
) -> PreDialDecision:
    """Ask the account's URL whether this dial may go ahead; fail-closed. Never raises for
    anything the URL does. Call it with no transaction open: it waits up to the timeout."""
    body = _body(request)
    headers = signing.signed_headers(target.secret, int(time.time()), body)
    headers["X-Outdial-Event-Type"] = "pre_dial.check"
    try:
        async with (
            asyncio.timeout(target.timeout),
            client.stream("POST", target.url, content=body, headers=headers) as response,
        ):
            answer = b""
            async for chunk in response.aiter_bytes():
                answer += chunk
                if len(answer) > MAX_ANSWER_BYTES:
                    return _refusal(FAILED, "the answer is too long")
    except (TimeoutError, httpx.TimeoutException):
        return _refusal(FAILED, f"no answer within {target.timeout:g} s")
    except Exception as exc:  # whatever else goes wrong, the dial does not go ahead
        return _refusal(FAILED, type(exc).__name__)
    return _decision(response.status_code, answer)


class PreDialChecker:
    """What the dialer holds: asks an account's check if it has one, else allows."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        box: CredentialBox,
        client: httpx.AsyncClient,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.box = box
        self.client = client

    async def allows(self, user_id: str, request: PreDialRequest) -> PreDialDecision:
        """One primary-key read, then (only for accounts with a check) the question."""
        async with self.sessionmaker() as session:
            try:
                target = await target_of(session, user_id, self.box)
            except RuntimeError:
                return _refusal(FAILED, "its secret cannot be read with this server's key")
        if target is None:
            return PreDialDecision(True)
        return await pre_dial_allows(self.client, target, request)
