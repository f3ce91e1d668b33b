"""The developer's cluster under `.data/pg`: what `messenger serve|migrate|db` use when
`DATABASE_URL` is unset. It is started on demand, reused across runs, and its URLs are
written to `.data/postgres.env`."""

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
    urls = {
        "DATABASE_URL": cluster.primary_url,
        "DATABASE_REPLICA_URLS": ",".join(cluster.replica_urls),
    }
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
