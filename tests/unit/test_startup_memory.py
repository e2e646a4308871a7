"""What a process does once it has started (`services.settle_startup_memory`): the startup
heap leaves the collector's passes, and the young generation is collected less often."""

from __future__ import annotations

import gc

from outdial import services


def test_startup_memory_is_frozen_and_young_passes_are_rarer() -> None:
    services.settle_startup_memory()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == services.GC_THRESHOLDS
    assert services.GC_THRESHOLDS[0] > 700  # Python's default young threshold
