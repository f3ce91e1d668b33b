"""Prometheus instruments of the data layer, named after OpenTelemetry's database client metrics.

`db.client.connection.count` becomes `db_client_connections` (Prometheus reserves `_count` for
histograms); pool names are logical (`primary`, `replica-0`), never hosts. Gauges that describe
a pool's current state are read at scrape time from the pools themselves (`app.ops.metrics`).
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

_WAIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_USE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

CONNECTION_WAIT = Histogram(
    "db_client_connection_wait_time_seconds",
    "Time it took to obtain a connection from the pool.",
    ["pool_name"],
    buckets=_WAIT_BUCKETS,
)
CONNECTION_USE = Histogram(
    "db_client_connection_use_time_seconds",
    "Time between borrowing a connection and returning it to the pool.",
    ["pool_name"],
    buckets=_USE_BUCKETS,
)
CONNECTION_TIMEOUTS = Counter(
    "db_client_connection_timeouts",
    "Requests that gave up waiting for a connection (DB_POOL_TIMEOUT_MS).",
    ["pool_name"],
)
RETRIES = Counter(
    "db_client_retries",
    "Operations retried after a transient connection failure.",
    ["pool_name"],
)
ERRORS = Counter(
    "db_client_errors",
    "Operations that failed, by pool and kind (transient, timeout, statement_timeout, query).",
    ["pool_name", "kind"],
)
REPLICA_STATE_CHANGES = Counter(
    "db_replica_state_changes",
    "Times a replica was taken out of or put back into rotation.",
    ["pool_name", "state"],
)
