"""Observations batched in the process reach prometheus_client's samples at flush, and only
then, exactly as if they had been made one by one."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from app.process.metric_batches import MetricBatches

BUCKETS = (0.005, 0.05, 0.5)


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_batches_reach_the_samples_at_flush_as_the_same_observations_would() -> None:
    registry, reference_registry = CollectorRegistry(), CollectorRegistry()
    histogram = Histogram("d", "d", buckets=BUCKETS, registry=registry)
    reference = Histogram("d", "d", buckets=BUCKETS, registry=reference_registry)
    counter = Counter("c", "c", registry=registry)
    gauge = Gauge("g", "g", registry=registry)
    batches = MetricBatches()
    durations, requests, in_progress = (
        batches.histogram(histogram),
        batches.counter(counter),
        batches.gauge(gauge),
    )
    for value in (0.001, 0.005, 0.0051, 0.4, 0.5, 2.0):
        durations.observe(value)
        reference.observe(value)
        requests.inc()
    in_progress.value += 3
    in_progress.value -= 1
    assert _value(registry, "d_count") == 0  # nothing shared before the flush
    assert _value(registry, "c_total") == 0
    batches.flush()
    for bound in ("0.005", "0.05", "0.5", "+Inf"):
        assert _value(registry, "d_bucket", le=bound) == _value(
            reference_registry, "d_bucket", le=bound
        )
    assert _value(registry, "d_sum") == _value(reference_registry, "d_sum")
    assert _value(registry, "c_total") == 6
    assert _value(registry, "g") == 2
    batches.flush()  # nothing new: nothing added twice
    assert _value(registry, "d_count") == 6
    assert _value(registry, "c_total") == 6
    in_progress.value -= 2
    batches.flush()
    assert _value(registry, "g") == 0
