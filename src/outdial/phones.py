"""E.164 normalisation with `phonenumbers`."""

from __future__ import annotations

import phonenumbers
from phonenumbers import NumberParseException


class InvalidPhoneNumber(ValueError):
    pass


def normalize_e164(raw: str, default_region: str) -> str:
    """Return `raw` as E.164, or raise InvalidPhoneNumber with a reason a person can act on."""
    text = raw.strip()
    if not text:
        raise InvalidPhoneNumber("phone number is empty")
    if len(text) > 40:
        raise InvalidPhoneNumber("phone number is too long")
    try:
        parsed = phonenumbers.parse(text, default_region)
    except NumberParseException as exc:
        raise InvalidPhoneNumber(f"not a phone number ({exc._msg})") from None
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidPhoneNumber(f"{text!r} is not a valid phone number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
