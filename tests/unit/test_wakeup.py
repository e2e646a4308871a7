"""The dialer's wake-ups: however often some campaigns wake it, every campaign is swept."""

from __future__ import annotations

import asyncio

from outdial.dialer.wakeup import Wakeup


async def test_a_sweep_comes_within_its_period_however_often_the_dialer_is_woken() -> None:
    """A worker busy with one campaign's ends is woken many times a second; the sweep that
    claims every running campaign (retries come due, rounds that failed) still comes every
    `seconds`, not only after a second in which nothing woke it."""
    wakeup = Wakeup()
    assert wakeup.take()[0]  # a new worker starts with a sweep
    sweeps = 0
    loop = asyncio.get_running_loop()
    until = loop.time() + 1.0
    while loop.time() < until:
        wakeup.campaign("busy")
        await wakeup.wait(0.2)
        everything, woken, _ = wakeup.take()
        assert woken == {"busy"}
        sweeps += everything
        await asyncio.sleep(0.02)
    assert sweeps >= 2  # one every 0.2 s of the second, give or take a slow wake


async def test_a_quiet_dialer_sweeps_after_the_period() -> None:
    wakeup = Wakeup()
    wakeup.take()
    await wakeup.wait(0.05)
    assert wakeup.take() == (True, set(), set())
    wakeup.notified("cmp_1")
    await wakeup.wait(10)  # woken: returns at once, no sweep yet
    assert wakeup.take() == (False, set(), {"cmp_1"})
