"""The developer's cluster under `.data/pg`: what `messenger serve|migrate|db` use when
`DATABASE_URL` is unset. It is started on demand, reused across runs, named to the service
as one host list (as production names a cluster), and written to `.data/postgres.env`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from app.dev.cluster import EmbeddedCluster

DATA_DIR = Path(os.environ.get("APP_DATA_DIR", Path.cwd() / ".data"))
CLUSTER_DIR = DATA_DIR / "pg"
ENV_FILE = DATA_DIR / "postgres.env"


def start(replicas: int = 1) -> tuple[dict[str, str], bool]:
    """Start (or reuse) the cluster; returns its URLs and whether this call started it."""
    cluster = EmbeddedCluster(CLUSTER_DIR, replicas=replicas)
    was_running = cluster.is_running()
    cluster.start()
    ENV_FILE.write_text(cluster.env_lines())
    urls = {"DATABASE_URL": cluster.host_list_url, "DATABASE_REPLICA_URLS": ""}
    verb = "reused" if was_running else "started"
    print(f"embedded PostgreSQL {verb}: {ENV_FILE}", file=sys.stderr)
    return urls, not was_running


def stop() -> None:
    """Stop every server of the cluster."""
    EmbeddedCluster(CLUSTER_DIR, replicas=1).stop()
    print("embedded PostgreSQL stopped", file=sys.stderr)


def env_text() -> str:
    """The env file of the last start ('' before the first)."""
    return ENV_FILE.read_text() if ENV_FILE.exists() else ""


def failover() -> str:
    """Stop the primary (fast) and promote a standby; returns a line saying what happened."""
    cluster = _running()
    old = cluster.primary.name
    new = cluster.failover("fast")
    ENV_FILE.write_text(cluster.env_lines())
    return f"{old} stopped; {new.name} promoted (127.0.0.1:{new.port}); `db rejoin` rebuilds {old}"


def rejoin() -> str:
    """Rebuild the old primary as a standby of the new one; returns what was rebuilt."""
    cluster = _running()
    rebuilt = cluster.rejoin()
    ENV_FILE.write_text(cluster.env_lines())
    names = ", ".join(node.name for node in rebuilt) or "nothing (every standby streams)"
    return f"rebuilt from a base backup of {cluster.primary.name}: {names}"


def _running() -> EmbeddedCluster:
    """The cluster under `.data/pg` with its recorded roles, as it is (nothing started)."""
    cluster = EmbeddedCluster(CLUSTER_DIR, replicas=1)
    cluster.load()
    return cluster
