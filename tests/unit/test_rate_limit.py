"""The per-key counter: fixed one-minute windows, limits by tier, the numbers in the headers."""

from __future__ import annotations

from outdial.auth.rate_limit import MemoryRateLimiter, Quota

MINUTE_START = 60 * 29_000_000  # a window boundary, as Unix time
TIERS = {"development": 100, "production": 1000, "tiny": 2}


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_key_is_refused_past_its_limit_until_the_minute_ends() -> None:
    clock = Clock(MINUTE_START + 15.5)
    limiter = MemoryRateLimiter(TIERS, "production", clock)
    quotas = [limiter.count("key_a", "tiny") for _ in range(4)]
    assert [q.exceeded for q in quotas] == [False, False, True, True]
    assert quotas[-1].reset == MINUTE_START + 60
    assert quotas[-1].retry_after == 45  # 44.5 s left, rounded up

    clock.now = MINUTE_START + 60
    fresh = limiter.count("key_a", "tiny")
    assert not fresh.exceeded
    assert fresh.reset == MINUTE_START + 120


def test_keys_count_separately() -> None:
    limiter = MemoryRateLimiter(TIERS, "production", Clock(MINUTE_START))
    for _ in range(3):
        limiter.count("key_a", "tiny")
    assert not limiter.count("key_b", "tiny").exceeded


def test_a_key_without_a_known_tier_gets_the_default_tier() -> None:
    limiter = MemoryRateLimiter(TIERS, "development", Clock(MINUTE_START))
    assert limiter.count("key_a", None).limit == 100
    assert limiter.count("key_b", "removed-from-settings").limit == 100
    assert limiter.count("key_c", "production").limit == 1000


def test_headers_never_show_a_negative_remainder() -> None:
    headers = dict(Quota(limit=3, used=4, reset=MINUTE_START + 60, now=MINUTE_START).headers())
    assert headers == {
        b"x-ratelimit-limit": b"3",
        b"x-ratelimit-remaining": b"0",
        b"x-ratelimit-reset": str(MINUTE_START + 60).encode(),
    }


def test_retry_after_is_at_least_one_second() -> None:
    quota = Quota(limit=1, used=2, reset=MINUTE_START + 60, now=MINUTE_START + 59.99)
    assert quota.retry_after == 1
