"""What the simulated carrier does with each call: seedable shares, timings and misbehaviour."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from enum import StrEnum

from pydantic import BaseModel, Field


class Fate(StrEnum):
    HUMAN = "human"
    MACHINE = "machine"
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    FAILED = "failed"


class Scenario(BaseModel):
    """Shares need not sum to 1; they are weights. Durations are seconds (ranges)."""

    human: float = Field(default=0.6, ge=0)
    machine: float = Field(default=0.15, ge=0)
    no_answer: float = Field(default=0.15, ge=0)
    busy: float = Field(default=0.05, ge=0)
    failed: float = Field(default=0.05, ge=0)
    ring_seconds: tuple[float, float] = (1.0, 4.0)
    talk_seconds: tuple[float, float] = (5.0, 20.0)
    duplicate_rate: float = Field(default=0.0, ge=0, le=1)
    reorder_rate: float = Field(default=0.0, ge=0, le=1)
    rate_limit_rate: float = Field(default=0.0, ge=0, le=1)
    drop_rate: float = Field(
        default=0.0, ge=0, le=1, description="Share of status callbacks never delivered."
    )
    lost_response_rate: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Share of dials the carrier places and then answers 500 to, as when its "
        "response is lost on the way: the call rings all the same.",
    )
    server_error_rate: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Share of dials answered 500 without being placed.",
    )
    lookup_error_rate: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Share of call listings (Twilio's `GET Calls.json`, Vobiz's live, queued "
        "and record lists) and fetches of one call answered 500: the carrier cannot say which "
        "calls it has.",
    )
    lookup_delay_seconds: float = Field(
        default=0.0,
        ge=0,
        description="Every call listing and fetch of one call is answered this much later (a "
        "slow or struggling carrier).",
    )
    callback_delay_seconds: float = Field(
        default=0.0, ge=0, description="Every callback is sent this much later (a slow carrier)."
    )
    listing_lag_seconds: float = Field(
        default=0.0,
        ge=0,
        description="A call appears in the call listings only this long after it was created "
        "(reads that are eventually consistent).",
    )
    invalid_numbers: list[str] = Field(
        default_factory=list,
        description="Numbers that do not exist: Twilio refuses their dial (400, code 21211); "
        "Vobiz takes it and hangs up at once (cause 3050, unallocated).",
    )
    account_failure_cause: str | None = Field(
        default=None,
        description="Vobiz takes every dial and hangs it up at once with this "
        "HangupCauseCode (1010: out of credits, 3030: a caller id not of the account): an "
        "account problem told only at the end of the call.",
    )
    reject_credentials: list[str] = Field(
        default_factory=list, description="Auth tokens the carrier refuses (401)."
    )
    caller_script: list[str] | None = Field(
        default=None,
        description="When set, a person who answers joins the answer document's media stream, "
        "says these lines one by one (waiting for each answer) and hangs up; `talk_seconds` "
        "is then unused. None keeps calls silent (the dialer benchmark's zero talk time).",
    )
    seed: int = 0


@dataclass
class Dice:
    """The scenario's seeded randomness, drawn in call order."""

    scenario: Scenario
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.scenario.seed)

    def fate(self) -> Fate:
        s = self.scenario
        weights = [s.human, s.machine, s.no_answer, s.busy, s.failed]
        if sum(weights) <= 0:
            return Fate.HUMAN
        return self.rng.choices(list(Fate), weights=weights)[0]

    def seconds(self, bounds: tuple[float, float]) -> float:
        low, high = bounds
        return self.rng.uniform(low, max(low, high))

    def chance(self, rate: float) -> bool:
        return rate > 0 and self.rng.random() < rate
