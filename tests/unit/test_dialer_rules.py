"""Pure dialer rules: outcomes, retry timing, and that callbacks only move calls forward."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from outdial.dialer.rules import after_attempt, attempt_outcome, retry_delay
from outdial.telephony.base import FINAL_STATES, LIVE_STATES, CallState, moves_forward

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
outcomes = st.sampled_from(["completed", "voicemail", "no_answer", "busy", "failed", "cancelled"])
policies = st.fixed_dictionaries(
    {
        "max_attempts": st.integers(1, 10),
        "retry_on": st.lists(
            st.sampled_from(["no_answer", "busy", "failed", "voicemail"]), unique=True
        ),
        "delays_seconds": st.lists(st.integers(60, 604_800), min_size=1, max_size=5),
    }
)


def test_a_machine_verdict_is_voicemail_whatever_the_end() -> None:
    assert attempt_outcome(CallState.COMPLETED, "machine", answered=True) == "voicemail"
    assert attempt_outcome(CallState.NO_ANSWER, "machine", answered=False) == "voicemail"


def test_an_answered_human_call_is_completed() -> None:
    assert attempt_outcome(CallState.COMPLETED, "human", answered=True) == "completed"
    assert attempt_outcome(CallState.COMPLETED, None, answered=True) == "completed"
    assert attempt_outcome(CallState.BUSY, None, answered=False) == "busy"
    assert attempt_outcome(CallState.NO_ANSWER, None, answered=False) == "no_answer"
    assert attempt_outcome(CallState.FAILED, None, answered=False) == "failed"


def test_retry_k_waits_the_kth_delay_then_the_last() -> None:
    policy = {"delays_seconds": [60, 600]}
    assert retry_delay(policy, 1) == timedelta(seconds=60)
    assert retry_delay(policy, 2) == timedelta(seconds=600)
    assert retry_delay(policy, 7) == timedelta(seconds=600)


@given(policies, outcomes, st.integers(1, 10))
def test_no_attempt_beyond_max_attempts(policy: dict, outcome: str, made: int) -> None:
    decision = after_attempt(policy, outcome, made, NOW, None)
    if decision.status == "retry_scheduled":
        assert made < policy["max_attempts"]
        assert outcome in policy["retry_on"]
        assert decision.next_attempt_at is not None
        assert decision.next_attempt_at - NOW >= timedelta(seconds=60)
    else:
        assert decision.status == outcome
        assert decision.next_attempt_at is None


@given(policies, st.integers(1, 9))
def test_a_number_that_does_not_exist_is_never_retried(policy: dict, made: int) -> None:
    policy = {**policy, "max_attempts": 10, "retry_on": ["failed"]}
    assert after_attempt(policy, "failed", made, NOW, None, "invalid_number").status == "failed"
    assert after_attempt(policy, "failed", made, NOW, None, "404").status == "retry_scheduled"


@given(policies, st.integers(1, 9), st.integers(1, 10**6))
def test_a_retry_past_the_schedule_end_expires(policy: dict, made: int, end_in: int) -> None:
    policy = {**policy, "max_attempts": 10, "retry_on": ["busy"]}
    decision = after_attempt(policy, "busy", made, NOW, NOW + timedelta(seconds=end_in))
    due = NOW + retry_delay(policy, made)
    if due >= NOW + timedelta(seconds=end_in):
        assert decision.status == "expired"
    else:
        assert decision.status == "retry_scheduled" and decision.next_attempt_at == due


@given(st.lists(st.sampled_from(list(CallState)), min_size=1, max_size=12))
def test_any_callback_order_only_moves_a_call_forward(events: list[CallState]) -> None:
    state = CallState.QUEUED
    order = [CallState.QUEUED, CallState.INITIATED, CallState.RINGING, CallState.IN_PROGRESS]
    for event in events:
        before = state
        if moves_forward(state, event):
            state = event
        assert before not in FINAL_STATES or state == before
        if before in LIVE_STATES and state in LIVE_STATES:
            assert order.index(state) >= order.index(before)
