"""Pure dialer rules: what an ended call means for its recipient, and when to try again."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from outdial.telephony.base import CallState, Verdict

RETRYABLE = frozenset({"no_answer", "busy", "failed", "voicemail"})
# Ended reasons no retry can change: the number does not exist (the call's `ended_reason`).
NEVER_RETRIED = frozenset({"invalid_number"})


def attempt_outcome(state: str, verdict: str | None, answered: bool) -> str:
    """The recipient-level outcome of one ended call.

    A machine verdict is `voicemail` whatever the call's end state; an answered call with a
    human (or undecided) verdict is `completed`; the rest map one to one.
    """
    if verdict == Verdict.MACHINE:
        return "voicemail"
    if state == CallState.COMPLETED:
        return "completed" if answered or verdict else "failed"
    return {
        CallState.BUSY: "busy",
        CallState.NO_ANSWER: "no_answer",
        CallState.CANCELED: "cancelled",
    }.get(CallState(state), "failed")


@dataclass(frozen=True)
class Decision:
    """The recipient's next status, and when it may be dialed again (retries only)."""

    status: str
    next_attempt_at: datetime | None = None


def retry_delay(policy: dict[str, Any], attempts_made: int) -> timedelta:
    """Retry k (k = attempts made so far) waits delays_seconds[min(k-1, len-1)]."""
    delays = policy.get("delays_seconds") or [1800]
    return timedelta(seconds=delays[min(attempts_made - 1, len(delays) - 1)])


def after_attempt(
    policy: dict[str, Any],
    outcome: str,
    attempts_made: int,
    now: datetime,
    schedule_end: datetime | None,
    reason: str | None = None,
) -> Decision:
    """Final outcome, or a retry when the policy allows one before the schedule ends; never
    a retry for a call that ended for a reason no retry changes (`NEVER_RETRIED`)."""
    allowed = (
        outcome in set(policy.get("retry_on", []))
        and outcome in RETRYABLE
        and reason not in NEVER_RETRIED
    )
    if not allowed or attempts_made >= int(policy.get("max_attempts", 1)):
        return Decision(outcome)
    due = now + retry_delay(policy, attempts_made)
    if schedule_end is not None and due >= schedule_end:
        return Decision("expired")
    return Decision("retry_scheduled", due)
