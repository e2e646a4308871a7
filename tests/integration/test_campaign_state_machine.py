"""Random action sequences over the real API agree with a model of the campaign state machine.

Each example creates a campaign, then applies a drawn sequence of start / pause / resume /
stop / delete / PATCH / append. After every step the response code must be what the model
predicts (409 exactly when the model refuses), and the stored status and counts must match.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.support import Tenant, phone

RECIPIENT_STATUSES = (
    "pending",
    "dialing",
    "in_progress",
    "retry_scheduled",
    "completed",
    "voicemail",
    "no_answer",
    "busy",
    "failed",
    "cancelled",
    "skipped",
    "expired",
)
TRANSITIONS = {
    ("draft", "start"): "running",
    ("running", "pause"): "paused",
    ("paused", "resume"): "running",
    ("running", "stop"): "completed",
    ("paused", "stop"): "completed",
}
# PATCH bodies by the field they change; which status accepts which is the spec's table.
PATCHES: dict[str, dict[str, Any]] = {
    "name": {"name": "Renamed"},
    "max_concurrency": {"max_concurrency": 17},
    "schedule_end_time": {"scheduleEndTime": "2099-01-01T00:00:00Z"},
    "retry_policy": {"retry_policy": {"max_attempts": 4}},
    "calling_hours": {"calling_hours": {"start": "09:00", "end": "17:00"}},
    "schedule_start_time": {"scheduleStartTime": "2098-01-01T00:00:00Z"},
    "campaign_context": {"campaign_context": "Context"},
    "speech_settings": {"speech_settings": {"emotions": "off"}},
    "opening_message_template": {"opening_message_template": "Hi {{ phone_number }}"},
    "assistant_id": {"assistant_id": "asst_other"},
    "channel": {"channel": "twilio"},
}
LIVE = {"name", "max_concurrency", "schedule_end_time", "retry_policy", "calling_hours"}
FIXED = {"assistant_id", "phone_number_id", "channel"}

Action = tuple[str, Any]
actions = st.one_of(
    st.tuples(st.sampled_from(["start", "pause", "resume", "stop", "delete"]), st.none()),
    st.tuples(st.just("patch"), st.sampled_from(sorted(PATCHES))),
    st.tuples(
        st.sampled_from(["append", "patch_recipients"]),
        st.lists(st.integers(0, 5), min_size=1, max_size=3),
    ),
)


@dataclass
class Model:
    """What the spec says the campaign is; `status` None once deleted."""

    status: str | None = "draft"
    numbers: set[int] = field(default_factory=set)
    counts: Counter[str] = field(default_factory=Counter)

    def add(self, picks: list[int]) -> None:
        for pick in picks:
            self.counts["skipped" if pick in self.numbers else "pending"] += 1
            self.counts["total"] += 1
            self.numbers.add(pick)

    def transition(self, action: str) -> int:
        target = TRANSITIONS.get((self.status or "", action))
        if target is None or (action == "start" and self.counts["total"] == 0):
            return 409
        if action == "stop":
            self.counts["cancelled"] += self.counts.pop("pending", 0)
        self.status = target
        return 200

    def editable(self, name: str) -> bool:
        if name in FIXED:
            return False
        if self.status == "draft":
            return True
        if self.status in ("running", "paused"):
            return name in LIVE or name == "recipients"
        return name == "name"

    def expect(self, kind: str, arg: Any) -> int:
        """Apply one action to the model; the status code the API must answer with."""
        if self.status is None:
            return 404
        if kind == "delete":
            if self.status in ("draft", "completed"):
                self.status = None
                return 204
            return 409
        if kind == "patch":
            return 200 if self.editable(arg) else 409
        if kind in ("append", "patch_recipients"):
            if self.status == "completed":
                return 409
            self.add(arg)
            return 200
        return self.transition(kind)


def inline(picks: list[int]) -> list[dict[str, str]]:
    return [{"phone_number": phone(pick)} for pick in picks]


async def perform(tenant: Tenant, campaign_id: str, kind: str, arg: Any) -> Any:
    path = f"/campaign/{campaign_id}"
    if kind == "delete":
        return await tenant.request("DELETE", path)
    if kind == "patch":
        return await tenant.request("PATCH", path, json=PATCHES[arg])
    if kind == "append":
        return await tenant.post(f"{path}/recipients", json={"recipients": inline(arg)})
    if kind == "patch_recipients":
        return await tenant.request("PATCH", path, json={"recipients": inline(arg)})
    return await tenant.post(f"{path}/{kind}")


async def check_stored(tenant: Tenant, campaign_id: str, model: Model) -> None:
    response = await tenant.get(f"/campaign/{campaign_id}")
    if model.status is None:
        assert response.status_code == 404
        return
    campaign = response.json()
    assert campaign["status"] == model.status
    counts = campaign["counts"]
    assert sum(counts[s] for s in RECIPIENT_STATUSES) == counts["total"]
    assert {s: counts[s] for s in ("total", "pending", "skipped", "cancelled")} == {
        s: model.counts[s] for s in ("total", "pending", "skipped", "cancelled")
    }
    listed = await tenant.get(f"/campaign/{campaign_id}/recipients", params={"limit": 500})
    assert listed.headers["X-Total-Count"] == str(model.counts["total"])
    assert Counter(r["status"] for r in listed.json()) == +Counter(
        {s: model.counts[s] for s in RECIPIENT_STATUSES}
    )


_REFS: dict[str, dict[str, str]] = {}


async def refs(tenant: Tenant) -> dict[str, str]:
    """One assistant and caller number per tenant, shared by every example."""
    if tenant.user_id not in _REFS:
        _REFS[tenant.user_id] = {
            "assistant_id": (await tenant.assistant())["id"],
            "phone_number_id": (await tenant.phone_number())["id"],
        }
    return _REFS[tenant.user_id]


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    initial=st.lists(st.integers(0, 5), max_size=3),
    steps=st.lists(actions, min_size=1, max_size=8),
)
async def test_api_follows_the_model(
    tenant: Tenant, initial: list[int], steps: list[Action]
) -> None:
    body = {"name": "Model", **(await refs(tenant))}
    body["recipients"] = inline(initial)
    campaign = await tenant.ok("POST", "/campaign", json=body)
    model = Model()
    model.add(initial)
    await check_stored(tenant, campaign["id"], model)
    for kind, arg in steps:
        status_before = model.status
        expected = model.expect(kind, arg)
        response = await perform(tenant, campaign["id"], kind, arg)
        assert response.status_code == expected, (kind, arg, status_before, response.text)
        if expected == 409:
            detail = response.json()["detail"]
            assert str(status_before) in detail or "no recipients" in detail, detail
        await check_stored(tenant, campaign["id"], model)
