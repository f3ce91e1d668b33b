"""`app.compat.prometheus_client` against the installed prometheus_client: a batch added
through it is exposed exactly as the same observations made one by one."""

from __future__ import annotations

from importlib.metadata import version

from prometheus_client import CollectorRegistry, Histogram

from app.compat.prometheus_client import TESTED_VERSIONS, add_to_histogram, upper_bounds

BUCKETS = (0.01, 0.1, 1.0)
VALUES = (0.0, 0.01, 0.010001, 0.05, 0.1, 0.7, 1.0, 3.0, 1e9)


def _samples(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    return {
        (sample.name, sample.labels.get("le", "")): sample.value
        for family in registry.collect()
        for sample in family.samples
        if not sample.name.endswith("_created")
    }


def test_the_installed_version_is_one_this_was_checked_against() -> None:
    major, minor = (int(part) for part in version("prometheus_client").split(".")[:2])
    low, high = TESTED_VERSIONS
    assert low <= (major, minor) < high, "re-check app/compat/prometheus_client.py"


def test_a_batch_is_exposed_as_the_same_observations_one_by_one() -> None:
    one_by_one, batched = CollectorRegistry(), CollectorRegistry()
    reference = Histogram("h", "h", buckets=BUCKETS, registry=one_by_one)
    target = Histogram("h", "h", buckets=BUCKETS, registry=batched)
    for value in VALUES:
        reference.observe(value)
    bounds = upper_bounds(target)
    assert bounds == [*BUCKETS, float("inf")]
    counts = [0] * len(bounds)
    for value in VALUES:  # prometheus_client's rule: the first bound >= the value
        counts[next(i for i, bound in enumerate(bounds) if value <= bound)] += 1
    add_to_histogram(target, counts, sum(VALUES))
    assert _samples(batched) == _samples(one_by_one)
