"""Signing what outdial POSTs to an account's URLs (webhooks and the pre-dial check).

`X-Outdial-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">`, keyed with the
endpoint's secret as UTF-8: the receiver recomputes it over the raw body (docs/webhooks.md).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from outdial import __version__

SECRET_PREFIX = "whsec_"
SIGNATURE_HEADER = "X-Outdial-Signature"
TIMESTAMP_HEADER = "X-Outdial-Timestamp"
USER_AGENT = f"outdial-webhooks/{__version__}"


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of `<timestamp>.<body>` under `secret`."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signed_headers(secret: str, timestamp: int, body: bytes) -> dict[str, str]:
    """Content type, user agent, timestamp and signature headers for one POST of `body`."""
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: f"t={timestamp},v1={signature(secret, timestamp, body)}",
    }
