"""The benchmark's tail counters read from a real exposition of the service's histograms."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from tests.bench.tail import difference, tail_counters


def _exposition(durations: list[float], gc: dict[str, list[float]]) -> str:
    registry = CollectorRegistry()
    http = Histogram(
        "http_server_request_duration_seconds",
        "d",
        ("path",),
        buckets=(0.1, 0.25, 0.5, 1.0),
        registry=registry,
    )
    pauses = Histogram(
        "process_gc_pause_seconds",
        "g",
        ("generation",),
        buckets=(0.001, 0.01, 0.1),
        registry=registry,
    )
    for n, value in enumerate(durations):
        http.labels(f"/p{n % 2}").observe(value)  # two label sets, summed
    for generation, values in gc.items():
        for value in values:
            pauses.labels(generation).observe(value)
    return generate_latest(registry).decode()


def test_slow_observations_are_counted_above_their_bounds_across_labels() -> None:
    counts = tail_counters(
        _exposition([0.05, 0.2, 0.3, 0.6, 2.0], {"0": [0.0005, 0.02], "2": [0.05]})
    )
    assert counts["server_requests"] == 5
    assert counts["server_over_250ms"] == 3
    assert counts["server_over_500ms"] == 2
    assert counts["gc_pauses"] == 3
    assert counts["gc_pauses_over_10ms"] == 2
    assert counts["gc_full_collections"] == 1
    assert round(counts["gc_pause_ms"], 1) == 70.5
    assert counts["loop_lag_samples"] == 0  # absent from the scrape: nothing counted


def test_difference_is_what_a_run_added() -> None:
    before = tail_counters(_exposition([0.6], {"2": [0.05]}))
    after = tail_counters(_exposition([0.6, 0.7, 0.01], {"2": [0.05, 0.2]}))
    delta = difference(after, before)
    assert delta["tail_server_requests"] == 2
    assert delta["tail_server_over_500ms"] == 1
    assert delta["tail_gc_full_collections"] == 1
    assert delta["tail_gc_pause_ms"] == 200
