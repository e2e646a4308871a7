"""Secrets at rest: Fernet for provider credentials, SHA-256 for API keys; the secret in a
call's callback and media URLs is an HMAC of the call under a key derived from the service's."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from outdial.ids import is_well_formed

API_KEY_PREFIX = "sk_live_"


class CredentialBox:
    """Encrypts and decrypts provider credentials with the service's secret key."""

    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)
        self._key = key

    def derive_key(self, purpose: bytes) -> bytes:
        """A key of its own for `purpose`, derived from the service's (HKDF-SHA256)."""
        return HKDF(algorithm=SHA256(), length=32, salt=None, info=purpose).derive(self._key)

    def seal(self, credentials: dict[str, Any]) -> bytes:
        return self._fernet.encrypt(json.dumps(credentials, sort_keys=True).encode())

    def open(self, token: bytes) -> dict[str, Any]:
        try:
            return dict(json.loads(self._fernet.decrypt(token)))
        except InvalidToken as exc:
            raise RuntimeError("credentials were sealed with another secret key") from exc


class CallSecrets:
    """The secret in a call's callback and media URLs: `{phone_number_id}.{mac}`.

    The MAC (HMAC-SHA256 under a key derived from the service's, 192 bits kept) binds the
    call id, the provider and the caller number, so a callback is checked without reading
    the call: the number it names gives the auth token its signature is checked with. The
    call stores the secret's SHA-256 as before (the media stream checks it against the row
    it reads anyway).
    """

    SEPARATOR = "."

    def __init__(self, box: CredentialBox) -> None:
        self._key = box.derive_key(b"outdial call secrets")

    def _mac(self, call_id: str, provider: str, phone_number_id: str) -> str:
        message = f"{call_id}\n{provider}\n{phone_number_id}".encode()
        digest = hmac.new(self._key, message, hashlib.sha256).digest()[:24]
        return base64.urlsafe_b64encode(digest).decode()

    def new(self, call_id: str, provider: str, phone_number_id: str) -> tuple[str, str]:
        """The call's secret and its SHA-256 (hex), for the call's row."""
        secret = f"{phone_number_id}{self.SEPARATOR}{self._mac(call_id, provider, phone_number_id)}"
        return secret, hashlib.sha256(secret.encode()).hexdigest()

    def phone_number_of(self, call_id: str, provider: str, secret: str) -> str | None:
        """The caller number the secret was made for, if it is this call's on `provider`."""
        phone_number_id, _, mac = secret.partition(self.SEPARATOR)
        if not mac or not is_well_formed(phone_number_id):
            return None
        expected = self._mac(call_id, provider, phone_number_id)
        matches = hmac.compare_digest(mac.encode("utf-8", "replace"), expected.encode())
        return phone_number_id if matches else None

    @classmethod
    def is_derived(cls, secret: str) -> bool:
        """Whether the secret has this form (a call made before it has a random one)."""
        return cls.SEPARATOR in secret


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
