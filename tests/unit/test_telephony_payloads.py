"""Provider payloads as the providers document them, and their signatures."""

from __future__ import annotations

import base64
import hashlib
import hmac

from outdial.telephony import twilio, vobiz
from outdial.telephony.base import PROVIDER_REFUSED, CallEvent, CallState, Verdict

# Twilio's documented signing example (URL, form parameters, auth token and signature).
TWILIO_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
TWILIO_FORM = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+12349013030",
    "Digits": "1234",
    "From": "+12349013030",
    "To": "+18005551212",
}
TWILIO_SIGNATURE = "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


def test_twilio_signature_matches_the_documented_example() -> None:
    assert twilio.verify(TWILIO_URL, TWILIO_FORM, TWILIO_SIGNATURE, "12345")


def test_twilio_signature_fails_on_any_change() -> None:
    assert not twilio.verify(
        TWILIO_URL, {**TWILIO_FORM, "Digits": "1235"}, TWILIO_SIGNATURE, "12345"
    )
    assert not twilio.verify(TWILIO_URL, TWILIO_FORM, TWILIO_SIGNATURE, "54321")
    assert not twilio.verify(TWILIO_URL, TWILIO_FORM, None, "12345")


def test_twilio_completed_status_callback() -> None:
    form = {
        "CallSid": "CAabc",
        "AccountSid": "ACx",
        "CallStatus": "completed",
        "CallDuration": "42",
        "Duration": "1",
        "SequenceNumber": "3",
        "CallbackSource": "call-progress-events",
        "Timestamp": "Tue, 01 Dec 2026 12:00:00 +0000",
    }
    event = twilio.parse_status(form)
    assert (event.provider_call_id, event.state, event.duration_seconds, event.sequence) == (
        "CAabc",
        CallState.COMPLETED,
        42,
        3,
    )
    assert event.dedupe_key == "status:completed:3"
    # Twilio's terminal callbacks carry a SIP code: only a failure's says why it ended.
    assert twilio.parse_status({**form, "SipResponseCode": "200"}).reason is None
    busy = {**form, "CallStatus": "busy", "SipResponseCode": "486"}
    assert twilio.parse_status(busy).reason is None


def test_twilio_failed_and_no_answer_callbacks() -> None:
    failed = twilio.parse_status(
        {"CallSid": "CA1", "CallStatus": "failed", "SipResponseCode": "404", "SequenceNumber": "2"}
    )
    assert failed.state is CallState.FAILED and failed.reason == "404"
    assert (
        twilio.parse_status({"CallSid": "CA1", "CallStatus": "no-answer"}).state
        is CallState.NO_ANSWER
    )
    assert (
        twilio.parse_status({"CallSid": "CA1", "CallStatus": "ringing"}).state is CallState.RINGING
    )


def test_twilio_answered_by_values() -> None:
    for value in (
        "machine_start",
        "machine_end_beep",
        "machine_end_silence",
        "machine_end_other",
        "fax",
    ):
        assert twilio.verdict(value) is Verdict.MACHINE
    assert twilio.verdict("human") is Verdict.HUMAN
    assert twilio.verdict("unknown") is Verdict.UNKNOWN
    assert (
        twilio.parse_answer({"CallSid": "CA1", "AnsweredBy": "machine_end_beep"}).verdict
        is Verdict.MACHINE
    )


def test_vobiz_v3_signature_is_hmac_sha256_of_url_dot_nonce() -> None:
    url, nonce, token = (
        "https://example.com/telephony/vobiz/call_1/s/hangup",
        "12345678901234567890",
        "tok",
    )
    digest = hmac.new(b"tok", f"{url}.{nonce}".encode(), hashlib.sha256).digest()
    expected = base64.b64encode(digest).decode()
    assert vobiz.sign_v3(url, nonce, token) == expected
    assert vobiz.verify(url + "?x=1", nonce, expected, token)  # the query string is not signed
    assert vobiz.verify(url, nonce, f"bogus,{expected}", token)
    assert not vobiz.verify(url, nonce, expected, "other")
    assert not vobiz.verify(url, None, expected, token)


def test_vobiz_hangup_causes() -> None:
    def state(code: str, status: str) -> CallState | None:
        return vobiz.parse_hangup(
            {"CallUUID": "u", "HangupCauseCode": code, "CallStatus": status, "Duration": "0"}
        ).state

    assert state("4000", "completed") is CallState.COMPLETED
    assert state("3000", "no-answer") is CallState.NO_ANSWER
    assert state("6010", "timeout") is CallState.NO_ANSWER
    assert state("3010", "busy") is CallState.BUSY
    assert state("1000", "cancel") is CallState.CANCELED
    assert state("2000", "failed") is CallState.FAILED
    machine = vobiz.parse_hangup({"CallUUID": "u", "HangupCauseCode": "9100", "Duration": "3"})
    assert machine.verdict is Verdict.MACHINE and machine.duration_seconds == 3


def test_vobiz_hangup_reasons_that_change_what_follows() -> None:
    def hangup(code: str) -> CallEvent:
        form = {"CallUUID": "u", "HangupCauseCode": code, "HangupCause": "X", "Duration": "0"}
        return vobiz.parse_hangup({**form, "CallStatus": "failed"})

    # No such number, or one barred (the country by geo permissions, the number, its
    # prefix): never retried.
    for code in ("2000", "2010", "2030", "2040", "2050", "3050", "3120"):
        assert hangup(code).reason == "invalid_number" and hangup(code).account_problem is None
    for code in ("1010", "2070", "3030", "3140"):  # the account's: the campaign pauses
        event = hangup(code)
        assert event.state is CallState.FAILED and event.reason == PROVIDER_REFUSED
        assert event.account_problem is not None and code in event.account_problem
    assert hangup("3090").reason == "X" and hangup("3090").account_problem is None
    # Credit run out mid-call: an answered call ends as any failed one, and still tells.
    cut = vobiz.parse_hangup(
        {"CallUUID": "u", "HangupCauseCode": "1010", "HangupCause": "X", "Duration": "42"}
    )
    assert cut.reason == "X" and cut.account_problem and cut.duration_seconds == 42


def test_a_vobiz_hangup_without_its_code_is_read_from_its_named_cause() -> None:
    """`HangupCause` holds FreeSWITCH's names; a hang-up whose `HangupCauseCode` is missing
    or empty (its `CallStatus` then often `completed`) is busy, no answer or cancelled by
    its name, not a failure: the retry policy's decision depends on it."""
    for name, expected in (
        ("USER_BUSY", CallState.BUSY),
        ("NO_ANSWER", CallState.NO_ANSWER),
        ("ORIGINATOR_CANCEL", CallState.CANCELED),
        ("NORMAL_CLEARING", CallState.COMPLETED),
    ):
        form = {"CallUUID": "u", "HangupCause": name, "CallStatus": "completed", "Duration": "0"}
        assert vobiz.parse_hangup(form).state is expected, name
        assert vobiz.parse_hangup({**form, "HangupCauseCode": ""}).state is expected, name


def test_vobiz_machine_detection_callback() -> None:
    assert vobiz.parse_machine({"CallUUID": "u", "Machine": "true"}).verdict is Verdict.MACHINE
    assert vobiz.parse_machine({"CallUUID": "u", "Machine": "false"}).verdict is Verdict.HUMAN


def test_vobiz_amd_time_is_clamped() -> None:
    assert vobiz.clamp_amd_ms(1) == 2000
    assert vobiz.clamp_amd_ms(5) == 5000
    assert vobiz.clamp_amd_ms(30) == 10_000
