"""The pure campaign state rules: transitions and which fields each status lets an edit change."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from outdial.campaign.schemas import CampaignUpdate
from outdial.campaign.state import (
    CAMPAIGN_STATUSES,
    COUNT_KEYS,
    RECIPIENT_FINAL,
    RECIPIENT_STATUSES,
    RECIPIENT_WAITING,
    TransitionRefused,
    next_status,
    refused_fields,
)

ACTIONS = ("start", "pause", "resume", "stop")
# The spec's table (product.md §3), written out independently of state.py.
ALLOWED = {
    ("draft", "start"): "running",
    ("running", "pause"): "paused",
    ("paused", "resume"): "running",
    ("running", "stop"): "completed",
    ("paused", "stop"): "completed",
}
FIXED = ["assistant_id", "phone_number_id", "channel"]
LIVE = [
    "name",
    "max_concurrency",
    "schedule_end_time",
    "retry_policy",
    "calling_hours",
    "recipients",
]
DRAFT_ONLY = [
    "schedule_start_time",
    "speech_settings",
    "campaign_context",
    "opening_message_template",
    "returning_message_template",
    "voicemail_message_template",
    "use_returning_greeting",
    "use_short_term_summaries",
    "short_term_summaries_limit",
    "machine_detection_timeout_seconds",
    "recipient_list_id",
]
ALL_FIELDS = FIXED + LIVE + DRAFT_ONLY


@pytest.mark.parametrize("status", CAMPAIGN_STATUSES)
@pytest.mark.parametrize("action", ACTIONS)
def test_next_status_follows_the_table(status: str, action: str) -> None:
    if (status, action) in ALLOWED:
        assert next_status(status, action) == ALLOWED[status, action]
        return
    with pytest.raises(TransitionRefused) as refused:
        next_status(status, action)
    assert status in str(refused.value)
    assert action in str(refused.value)
    assert (refused.value.status, refused.value.action) == (status, action)


def test_unknown_action_is_a_programming_error() -> None:
    with pytest.raises(KeyError):
        next_status("draft", "launch")


@given(st.lists(st.sampled_from(ACTIONS), max_size=20))
def test_any_action_sequence_matches_the_table(actions: list[str]) -> None:
    status = "draft"
    for action in actions:
        expected = ALLOWED.get((status, action))
        try:
            status_after = next_status(status, action)
        except TransitionRefused:
            assert expected is None
            continue
        assert status_after == expected
        status = status_after
    assert status in CAMPAIGN_STATUSES


@pytest.mark.parametrize("status", CAMPAIGN_STATUSES)
def test_fixed_fields_are_refused_in_every_status(status: str) -> None:
    assert refused_fields(status, FIXED) == FIXED


def test_draft_accepts_everything_else() -> None:
    assert refused_fields("draft", LIVE + DRAFT_ONLY) == []


@pytest.mark.parametrize("status", ["running", "paused"])
def test_live_statuses_accept_only_the_live_fields(status: str) -> None:
    assert refused_fields(status, LIVE) == []
    assert refused_fields(status, DRAFT_ONLY) == DRAFT_ONLY


def test_completed_accepts_only_the_name() -> None:
    assert refused_fields("completed", ["name"]) == []
    assert refused_fields("completed", ALL_FIELDS) == [f for f in ALL_FIELDS if f != "name"]


@given(st.sampled_from(CAMPAIGN_STATUSES), st.lists(st.sampled_from(ALL_FIELDS), unique=True))
def test_refused_fields_is_the_ordered_subset_the_status_forbids(
    status: str, fields: list[str]
) -> None:
    allowed = {
        "draft": set(LIVE + DRAFT_ONLY),
        "running": set(LIVE),
        "paused": set(LIVE),
        "completed": {"name"},
    }[status]
    assert refused_fields(status, fields) == [f for f in fields if f not in allowed]
    assert refused_fields(status, iter(fields)) == refused_fields(status, fields)


def test_recipient_status_sets_are_consistent() -> None:
    assert set(RECIPIENT_WAITING) <= set(RECIPIENT_STATUSES) - set(RECIPIENT_FINAL)
    assert len(set(RECIPIENT_STATUSES)) == len(RECIPIENT_STATUSES) == 12
    assert set(COUNT_KEYS) == {*RECIPIENT_STATUSES, "total", "calls_placed", "calls_active"}


def test_the_tables_here_cover_every_editable_field() -> None:
    assert set(ALL_FIELDS) == set(CampaignUpdate.model_fields)
