"""The developer's cluster under `.data/pg`: what `messenger serve|migrate|db` use when
`DATABASE_URL` is unset. It is started on demand, reused across runs, named to the service
as one host list (as production names a cluster), and written to `.data/postgres.env`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from app.dev.cluster import EmbeddedCluster
from app.redact import redact_text

DATA_DIR = Path(os.environ.get("APP_DATA_DIR", Path.cwd() / ".data"))
CLUSTER_DIR = DATA_DIR / "pg"
ENV_FILE = DATA_DIR / "postgres.env"


def start(replicas: int = 1) -> tuple[dict[str, str], bool]:
    """Start (or reuse) the cluster; returns its URLs and whether this call started it."""
    cluster = EmbeddedCluster(CLUSTER_DIR, replicas=replicas)
    was_running = cluster.is_running()
    cluster.start()
    _write_env(cluster)
    urls = {"DATABASE_URL": cluster.host_list_url, "DATABASE_REPLICA_URLS": ""}
    verb = "reused" if was_running else "started"
    for notice in cluster.notices:
        print(notice, file=sys.stderr)
    print(f"embedded PostgreSQL {verb}: {ENV_FILE}", file=sys.stderr)
    return urls, not was_running


def stop() -> None:
    """Stop every server of the cluster."""
    EmbeddedCluster(CLUSTER_DIR, replicas=1).stop()
    print("embedded PostgreSQL stopped", file=sys.stderr)


def cluster_paths() -> list[Path]:
    """Where the cluster keeps anything: `.data/pg`, and as root its data directories under
    `/var/lib/messenger-pg/clusters/` (outside the checkout); those that exist."""
    cluster = EmbeddedCluster(CLUSTER_DIR, replicas=1)
    paths = dict.fromkeys([cluster.root, cluster.data_root, ENV_FILE])
    return [path for path in paths if path.exists()]


def destroy() -> None:
    """Stop every server of the cluster at once and delete its data wherever it lives."""
    EmbeddedCluster(CLUSTER_DIR, replicas=1).destroy()
    ENV_FILE.unlink(missing_ok=True)


def env_text() -> str:
    """The env file of the last start ('' before the first), its password masked: printed
    to a terminal (and CI logs), it says where the whole file is instead."""
    if not ENV_FILE.exists():
        return ""
    return (
        redact_text(ENV_FILE.read_text())
        + f"# with the password: {ENV_FILE} (`set -a; . {ENV_FILE}; set +a`)\n"
    )


def _write_env(cluster: EmbeddedCluster) -> None:
    """The URLs (with the password) for people and tools: readable by the owner only."""
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(ENV_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(cluster.env_lines())


def failover() -> str:
    """Stop the primary (fast) and promote a standby; returns a line saying what happened."""
    cluster = _running()
    old = cluster.primary.name
    new = cluster.failover("fast")
    _write_env(cluster)
    return f"{old} stopped; {new.name} promoted (127.0.0.1:{new.port}); `db rejoin` rebuilds {old}"


def rejoin() -> str:
    """Rebuild the old primary as a standby of the new one; returns what was rebuilt."""
    cluster = _running()
    rebuilt = cluster.rejoin()
    _write_env(cluster)
    names = ", ".join(node.name for node in rebuilt) or "nothing (every standby streams)"
    return f"rebuilt from a base backup of {cluster.primary.name}: {names}"


def _running() -> EmbeddedCluster:
    """The cluster under `.data/pg` with its recorded roles, as it is (nothing started)."""
    cluster = EmbeddedCluster(CLUSTER_DIR, replicas=1)
    cluster.load()
    return cluster
