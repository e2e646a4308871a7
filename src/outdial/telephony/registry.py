"""Providers for caller numbers, built from sealed credentials.

In simulated mode the real Twilio and Vobiz adapters are pointed at the carrier simulator
instead of the internet; nothing else changes.
"""

from __future__ import annotations

from typing import Any

import httpx

from outdial.models import PhoneNumber
from outdial.secrets_store import CallSecrets, CredentialBox
from outdial.telephony import twilio, vobiz
from outdial.telephony.base import DialError, DialErrorKind, Provider


class UnreadableCredentials(DialError):
    """A number's credentials cannot be read (sealed with another secret key, or without
    what its provider needs): every question to its provider is refused, as the provider
    refuses bad credentials, so each caller's handling of a refusal applies (the dialer's
    breaker pauses the campaign with this reason)."""

    def __init__(self, number_id: str, why: str) -> None:
        message = f"the credentials of {number_id} cannot be read ({why}): enter them again"
        super().__init__(DialErrorKind.REJECTED, message)


class Carriers:
    def __init__(
        self, box: CredentialBox, client: httpx.AsyncClient, simulator_url: str | None
    ) -> None:
        self._box = box
        self.call_secrets = CallSecrets(box)  # the secret in each call's URLs
        self._client = client
        self._simulator_url = simulator_url.rstrip("/") if simulator_url else None
        self._credentials: dict[tuple[str, Any], dict[str, str]] = {}

    def credentials(self, number: PhoneNumber) -> dict[str, str]:
        """Decrypted once per version of the number's row, then kept in memory."""
        key = (number.id, number.updated_at)
        if key not in self._credentials:
            try:
                opened = self._box.open(number.credentials)
            except (RuntimeError, ValueError, TypeError) as exc:
                raise UnreadableCredentials(number.id, str(exc)) from exc
            self._credentials[key] = {k: str(v) for k, v in opened.items()}
        return self._credentials[key]

    def auth_token(self, number: PhoneNumber) -> str:
        token = self.credentials(number).get("auth_token")
        if not token:
            raise UnreadableCredentials(number.id, "no auth_token")
        return token

    def for_number(self, number: PhoneNumber) -> Provider:
        secrets = self.credentials(number)
        account = "account_sid" if number.provider == "twilio" else "auth_id"
        if missing := [name for name in (account, "auth_token") if not secrets.get(name)]:
            raise UnreadableCredentials(number.id, f"no {' or '.join(missing)}")
        if number.provider == "twilio":
            base = self._simulator_url or twilio.API_BASE
            return twilio.TwilioProvider(
                self._client, secrets["account_sid"], secrets["auth_token"], base
            )
        base = f"{self._simulator_url}/api/v1" if self._simulator_url else vobiz.API_BASE
        return vobiz.VobizProvider(self._client, secrets["auth_id"], secrets["auth_token"], base)
