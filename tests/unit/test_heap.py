"""The heap frozen after warm-up: later collections skip it, their pauses are measured, and
stopping undoes both."""

from __future__ import annotations

import gc

import anyio
from prometheus_client import REGISTRY

from app.process.heap import GC_THRESHOLDS, FrozenHeap


def _pauses(generation: int) -> float:
    value = REGISTRY.get_sample_value(
        "process_gc_pause_seconds_count", {"generation": str(generation)}
    )
    return value or 0.0


def test_start_freezes_the_heap_and_times_collections_and_stop_undoes_it() -> None:
    heap = FrozenHeap()
    before = _pauses(2)
    defaults = gc.get_threshold()
    try:
        anyio.run(heap.start)
        assert gc.get_freeze_count() > 1_000  # what existed (the test session's objects)
        assert gc.get_threshold() == GC_THRESHOLDS
        gc.collect()
        assert _pauses(2) == before + 1
    finally:
        anyio.run(heap.stop)
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == defaults
    gc.collect()
    assert _pauses(2) == before + 1  # no longer timed
