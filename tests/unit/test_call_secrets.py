"""A call's secret names its caller number and is bound to the call, the provider and the
number: no other combination opens it."""

from __future__ import annotations

from cryptography.fernet import Fernet
from hypothesis import given
from hypothesis import strategies as st

from outdial.secrets_store import CallSecrets, CredentialBox

SECRETS = CallSecrets(CredentialBox(Fernet.generate_key()))
ids = st.from_regex(r"[a-z]{2,5}_[A-Za-z0-9]{1,20}", fullmatch=True)
providers = st.sampled_from(["twilio", "vobiz"])


@given(ids, providers, ids, ids, providers, ids)
def test_a_secret_opens_only_for_its_own_call_provider_and_number(
    call_id: str,
    provider: str,
    number_id: str,
    other_call: str,
    other_provider: str,
    other_number: str,
) -> None:
    secret, secret_hash = SECRETS.new(call_id, provider, number_id)
    assert CallSecrets.is_derived(secret) and len(secret_hash) == 64
    assert SECRETS.phone_number_of(call_id, provider, secret) == number_id
    assert secret.startswith(f"{number_id}.")
    opened = SECRETS.phone_number_of(other_call, other_provider, secret)
    assert opened == (number_id if (other_call, other_provider) == (call_id, provider) else None)
    forged = f"{other_number}.{secret.partition('.')[2]}"
    assert SECRETS.phone_number_of(call_id, provider, forged) == (
        number_id if other_number == number_id else None
    )


def test_the_key_is_the_services() -> None:
    secret, _ = SECRETS.new("call_1", "twilio", "pn_1")
    assert SECRETS.new("call_1", "twilio", "pn_1")[0] == secret  # the same call, the same secret
    other = CallSecrets(CredentialBox(Fernet.generate_key()))
    assert other.phone_number_of("call_1", "twilio", secret) is None
