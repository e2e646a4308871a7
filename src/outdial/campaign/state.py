"""The campaign and recipient state rules, as plain data and pure functions."""

from __future__ import annotations

from collections.abc import Iterable

CAMPAIGN_STATUSES = ("draft", "running", "paused", "completed")

TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
    "start": (frozenset({"draft"}), "running"),
    "pause": (frozenset({"running"}), "paused"),
    "resume": (frozenset({"paused"}), "running"),
    "stop": (frozenset({"running", "paused"}), "completed"),
}

RECIPIENT_ACTIVE = ("pending", "dialing", "in_progress", "retry_scheduled")
RECIPIENT_FINAL = (
    "completed",
    "voicemail",
    "no_answer",
    "busy",
    "failed",
    "cancelled",
    "skipped",
    "expired",
)
RECIPIENT_STATUSES = RECIPIENT_ACTIVE + RECIPIENT_FINAL
# Recipients that no live call holds; `stop` cancels exactly these.
RECIPIENT_WAITING = ("pending", "retry_scheduled")
# What the end of a campaign makes of its waiting recipients, by its ended_reason: a stop
# cancels them, the schedule's end expires them (also a dial given back after the end).
WAITING_AT_THE_END = {
    "stopped": ("cancelled", "campaign stopped"),
    "schedule_ended": ("expired", "schedule ended"),
}
COUNT_KEYS = (*RECIPIENT_STATUSES, "total", "calls_placed", "calls_active")

_ALWAYS_FIXED = frozenset({"assistant_id", "phone_number_id", "channel"})
_LIVE_EDITABLE = frozenset(
    {"name", "max_concurrency", "schedule_end_time", "retry_policy", "calling_hours", "recipients"}
)
EDITABLE: dict[str, frozenset[str] | None] = {
    "draft": None,  # everything but _ALWAYS_FIXED
    "running": _LIVE_EDITABLE,
    "paused": _LIVE_EDITABLE,
    "completed": frozenset({"name"}),
}


class TransitionRefused(Exception):
    def __init__(self, action: str, status: str) -> None:
        super().__init__(f"Cannot {action} a campaign that is {status}")
        self.action = action
        self.status = status


def next_status(status: str, action: str) -> str:
    """The status `action` leads to from `status`; TransitionRefused when it is not allowed."""
    allowed_from, target = TRANSITIONS[action]
    if status not in allowed_from:
        raise TransitionRefused(action, status)
    return target


def refused_fields(status: str, fields: Iterable[str]) -> list[str]:
    """The fields of an edit that a campaign in `status` does not accept, in the given order."""
    editable = EDITABLE[status]
    return [
        field
        for field in fields
        if field in _ALWAYS_FIXED or (editable is not None and field not in editable)
    ]
