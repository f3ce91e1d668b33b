"""Prometheus instruments of the data layer, named after OpenTelemetry's database client metrics.

`db.client.connection.count` becomes `db_client_connections` (Prometheus reserves `_count` for
histograms); pool names are logical (`primary`, `replica-0`), never hosts.

Gauges are set by the process that owns the pool (`publish_cluster`, from
`Database.publish_metrics`), so they also work in prometheus_client's multiprocess mode
(several granian workers): there each gauge declares how the workers' values combine
(`livesum`: the pod's total; `livemax` / `livemin`: the worst worker's view).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

if TYPE_CHECKING:
    from app.db.cluster_state import ClusterSnapshot

# `*_created` series only add noise to a scrape and to `promtool check metrics`.
disable_created_metrics()  # type: ignore[no-untyped-call]

_WAIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_USE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

CONNECTIONS = Gauge(
    "db_client_connections",
    "Open connections of the pool, by state (idle or used).",
    ["pool_name", "state"],
    multiprocess_mode="livesum",
)
CONNECTION_MAX = Gauge(
    "db_client_connection_max",
    "Maximum number of open connections the pool allows.",
    ["pool_name"],
    multiprocess_mode="livesum",
)
CONNECTION_IDLE_MIN = Gauge(
    "db_client_connection_idle_min",
    "Minimum number of idle connections the pool keeps open (warmed at start).",
    ["pool_name"],
    multiprocess_mode="livesum",
)
PENDING_REQUESTS = Gauge(
    "db_client_connection_pending_requests",
    "Requests currently waiting for a connection from the pool.",
    ["pool_name"],
    multiprocess_mode="livesum",
)
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
REPLICA_HEALTHY = Gauge(
    "db_replica_healthy",
    "1 when the replica is in rotation for reads, else 0.",
    ["pool_name"],
    multiprocess_mode="livemin",
)
REPLICA_LAG = Gauge(
    "db_replica_lag_seconds",
    "Replica staleness: 0 when it has replayed the primary's current position, else how long"
    " the primary has been ahead (its own view while the primary is unreachable).",
    ["pool_name"],
    multiprocess_mode="livemax",
)
REPLICA_LAG_BYTES = Gauge(
    "db_replica_lag_bytes",
    "WAL bytes between the primary's current position and the replica's replay position.",
    ["pool_name"],
    multiprocess_mode="livemax",
)


CLUSTER_PRIMARIES = Gauge(
    "db_cluster_primaries",
    "Members that answered as a primary in the last monitor round (1 is healthy; 0 during a"
    " failover; 2 is a split brain, and writes are refused).",
    multiprocess_mode="livemax",
)
MEMBER_ROLE = Gauge(
    "db_cluster_member_role",
    "1 for the role each member (host:port) had in the last monitor round, 0 for the others.",
    ["member", "role"],
    multiprocess_mode="livemax",
)
PRIMARY_CHANGES = Counter(
    "db_cluster_primary_changes",
    "Times the writer pool moved to another member (a failover or switchover was followed).",
)
WRITES_BLOCKED = Gauge(
    "db_cluster_writes_blocked",
    "1 while writes are refused because two members claim to be primary.",
    multiprocess_mode="livemax",
)


TOKEN_READS = Counter(
    "db_consistency_token_reads",
    "Reads that carried an X-Consistency-Token, by where they were served: `replica` (known"
    " to have replayed it), `replica_checked` (asked on the read's own connection, after"
    " waiting up to DB_TOKEN_WAIT_MS), `primary` (no replica had replayed it: moved to the"
    " writer), `rejected` (ahead of the primary: answered 400).",
    ["served_by"],
)


def counter_total(counter: Counter, pool_name: str) -> float:
    """This process's count of `counter` for `pool_name`, summed over any other labels."""
    total = 0.0
    for family in counter.collect():
        for sample in family.samples:
            if sample.name.endswith("_total") and sample.labels.get("pool_name") == pool_name:
                total += sample.value
    return total


def publish_cluster(snapshot: ClusterSnapshot) -> None:
    """Write the pools, replicas and members of `snapshot` into the gauges: the one place the
    data layer's gauges are set (every interval, at each scrape, and after the pools close)."""
    for pool in snapshot.pools:
        pool.publish_metrics()
    for replica in snapshot.replicas:
        REPLICA_HEALTHY.labels(replica.name).set(1 if replica.healthy else 0)
        REPLICA_LAG.labels(replica.name).set(replica.lag_seconds)
        REPLICA_LAG_BYTES.labels(replica.name).set(replica.lag_bytes)
    for member, role in snapshot.roles.items():
        for each in ("primary", "standby", "unknown"):
            MEMBER_ROLE.labels(member, each).set(1 if role == each else 0)
    WRITES_BLOCKED.set(1 if snapshot.write_block else 0)
