"""Opaque, prefixed identifiers (`cmp_…`, `asst_…`)."""

import re
import secrets

_WELL_FORMED = re.compile(r"^[a-z]{2,5}_[A-Za-z0-9]{1,64}$")


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


def is_well_formed(value: str) -> bool:
    """False for anything no outdial id can look like, so lookups can answer 404 at once."""
    return bool(_WELL_FORMED.match(value))
