"""The `/health/metrics` JSON snapshot for dashboards: numbers, never formatted strings.

It describes the worker that answers (see `process.workerId`); `/metrics` is the aggregate
over all workers.
"""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime
from typing import Any

import psutil

from app.db.cluster import Database
from app.db.cluster_state import ClusterSnapshot, ReplicaView
from app.db.pool import PoolSnapshot


def metrics_snapshot(database: Database | None, *, phase: str, uptime_s: float) -> dict[str, Any]:
    """Pools, replicas, memory and process of this worker."""
    pid = os.getpid()
    cluster = database.snapshot if database is not None else None
    pools = [pool.snapshot() for pool in cluster.pools] if cluster is not None else []
    replicas = cluster.replicas if cluster is not None else ()
    return {
        "status": phase,
        "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "database": {snapshot.name: _pool(snapshot) for snapshot in pools},
        "replicas": {state.name: _replica(state) for state in replicas},
        "cluster": _cluster(cluster) if cluster is not None else {},
        "memory": {"rss": psutil.Process(pid).memory_info().rss},
        "process": {
            "uptime": uptime_s,
            "pid": pid,
            "workerId": f"{socket.gethostname()}:{pid}",
        },
    }


def _pool(snapshot: PoolSnapshot) -> dict[str, Any]:
    return {
        "totalCount": snapshot.total,
        "idleCount": snapshot.idle,
        "usedCount": snapshot.used,
        "waitingCount": snapshot.waiting,
        "minSize": snapshot.min_size,
        "maxSize": snapshot.max_size,
        "utilization": snapshot.utilization,
        "acquireWaitMs": {
            "p50": snapshot.wait_p50_ms,
            "p95": snapshot.wait_p95_ms,
            "p99": snapshot.wait_p99_ms,
        },
        "timeouts": snapshot.timeouts,
        "retries": snapshot.retries,
        "errors": snapshot.errors,
    }


def _cluster(cluster: ClusterSnapshot) -> dict[str, Any]:
    """Every member with its role, and for standbys their health and lag."""
    members: dict[str, Any] = {}
    for name, role in cluster.roles.items():
        replica = cluster.replica_of_member(name)
        member: dict[str, Any] = {"role": role, "writer": name == cluster.writer_member}
        if replica is not None:
            member.update(pool=replica.name, **_replica(replica))
        members[name] = member
    return {
        "discoversRoles": cluster.discovers_roles,
        "primary": cluster.writer_member,
        "writesBlocked": cluster.write_block,
        "members": members,
    }


def _replica(state: ReplicaView) -> dict[str, Any]:
    return {
        "healthy": state.healthy,
        "lagSeconds": round(state.lag_seconds, 3),
        "lagBytes": state.lag_bytes,
    }
