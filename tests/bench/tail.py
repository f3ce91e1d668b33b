"""Where the slowest requests of a run waited: the service's own clocks, scraped before and
after each run and subtracted.

A client's latency is the server's time for the request plus every wait before the application
sees it (the kernel's accept queue, granian's queue, the load generator's own CPU). The service
measures its part (`http_server_request_duration_seconds`), and three things that make every
request in flight wait at once: garbage-collector pauses (`process_gc_pause_seconds`), the
event loop's lag (`process_event_loop_lag_seconds`, sampled every 100 ms) and waits for a pool
connection (`db_client_connection_wait_time_seconds`). Counting the slow ones of each next to
the client's p99 tells which of them the tail is made of; none of them is per request, so the
report states counts and shares, not a per-request attribution.
"""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

# (count name in the run, metric sample, label filter, upper bound `le`): the count of
# observations above the bound is the total count minus the bucket at that bound.
SLOW: tuple[tuple[str, str, dict[str, str], str | None], ...] = (
    ("server_requests", "http_server_request_duration_seconds", {}, None),
    ("server_over_250ms", "http_server_request_duration_seconds", {}, "0.25"),
    ("server_over_500ms", "http_server_request_duration_seconds", {}, "0.5"),
    ("gc_pauses", "process_gc_pause_seconds", {}, None),
    ("gc_pauses_over_10ms", "process_gc_pause_seconds", {}, "0.01"),
    ("gc_full_collections", "process_gc_pause_seconds", {"generation": "2"}, None),
    ("loop_lag_samples", "process_event_loop_lag_seconds", {}, None),
    ("loop_lag_over_50ms", "process_event_loop_lag_seconds", {}, "0.05"),
    ("loop_lag_over_250ms", "process_event_loop_lag_seconds", {}, "0.25"),
    ("pool_waits", "db_client_connection_wait_time_seconds", {}, None),
    ("pool_waits_over_100ms", "db_client_connection_wait_time_seconds", {}, "0.1"),
)
SUMS = (
    ("gc_pause_ms", "process_gc_pause_seconds_sum"),
    ("pool_wait_ms", "db_client_connection_wait_time_seconds_sum"),
)


def tail_counters(exposition: str) -> dict[str, float]:
    """The counters of `SLOW` and `SUMS` in one scrape, summed over workers and labels."""
    counts: dict[str, float] = {}
    buckets: dict[tuple[str, str], float] = {}
    totals: dict[str, float] = {}
    sums: dict[str, float] = {}
    wanted = {metric for _, metric, _, _ in SLOW}
    filters = {(name, metric): labels for name, metric, labels, _ in SLOW}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            for name, metric in SUMS:
                if sample.name == metric:
                    sums[name] = sums.get(name, 0.0) + sample.value * 1000
            base = sample.name.removesuffix("_bucket").removesuffix("_count")
            if base not in wanted:
                continue
            for (name, metric), labels in filters.items():
                if metric != base or any(sample.labels.get(k) != v for k, v in labels.items()):
                    continue
                if sample.name.endswith("_count"):
                    totals[name] = totals.get(name, 0.0) + sample.value
                elif sample.name.endswith("_bucket"):
                    key = (name, sample.labels["le"])
                    buckets[key] = buckets.get(key, 0.0) + sample.value
    for name, _, _, bound in SLOW:
        total = totals.get(name, 0.0)
        counts[name] = total if bound is None else total - buckets.get((name, bound), total)
    counts.update(sums)
    return counts


def difference(after: dict[str, float], before: dict[str, float]) -> dict[str, int]:
    """What happened during the run (counters only grow within one server's life)."""
    return {f"tail_{k}": round(v - before.get(k, 0.0)) for k, v in after.items()}
