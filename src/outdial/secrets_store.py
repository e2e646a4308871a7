"""Secrets at rest: Fernet for provider credentials, SHA-256 for API keys."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

API_KEY_PREFIX = "sk_live_"


class CredentialBox:
    """Encrypts and decrypts provider credentials with the service's secret key."""

    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    def seal(self, credentials: dict[str, Any]) -> bytes:
        return self._fernet.encrypt(json.dumps(credentials, sort_keys=True).encode())

    def open(self, token: bytes) -> dict[str, Any]:
        try:
            return dict(json.loads(self._fernet.decrypt(token)))
        except InvalidToken as exc:
            raise RuntimeError("credentials were sealed with another secret key") from exc


def load_or_create_key(configured: str | None, data_dir: Path) -> bytes:
    """The configured key, else the one in `data_dir/secret.key` (created on first use)."""
    if configured:
        return configured.encode()
    path = data_dir / "secret.key"
    if path.exists():
        return path.read_bytes().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
    return key


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    """Keys carry 256 random bits, so a plain SHA-256 is enough to make the stored form useless."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
