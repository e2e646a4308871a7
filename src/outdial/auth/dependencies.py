"""The request dependency that turns `Authorization` + `X-User-ID` into the caller's user id."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from outdial.auth import service
from outdial.auth.rate_limit import STATE_KEY, RateLimiter
from outdial.database import get_session
from outdial.errors import RateLimited, Unauthorized

Session = Annotated[AsyncSession, Depends(get_session, scope="function")]

_bearer = HTTPBearer(auto_error=False, description="API key (`Authorization: Bearer sk_live_…`)")
_user_header = APIKeyHeader(
    name="X-User-ID", auto_error=False, description="The user id the API key belongs to."
)


async def current_user_id(
    request: Request,
    session: Session,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    x_user_id: Annotated[str | None, Depends(_user_header)],
) -> str:
    """The caller's user id, once the key is checked and counted against its rate limit."""
    if credentials is None or not x_user_id or not credentials.credentials.strip():
        raise Unauthorized()
    key = await service.authenticate(session, credentials.credentials.strip(), x_user_id.strip())
    rate_limiter: RateLimiter = request.app.state.rate_limiter
    quota = await rate_limiter.take(key.id, key.tier)
    setattr(request.state, STATE_KEY, quota)
    if quota.exceeded:
        raise RateLimited(quota.retry_after)
    return key.user_id


UserId = Annotated[str, Depends(current_user_id)]


def require_all_credentials(schema: dict[str, Any]) -> dict[str, Any]:
    """FastAPI lists each security dependency as an alternative; outdial needs both headers."""
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            requirements = operation.get("security") or []
            if len(requirements) > 1:
                operation["security"] = [{k: v for item in requirements for k, v in item.items()}]
    return schema
