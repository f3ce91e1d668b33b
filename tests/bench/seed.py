"""The bench's own cluster: a fresh embedded primary and replica, migrated and seeded in SQL.

Membership is arithmetic so the wrk scripts can pick members without a lookup: member k
(1..members) of chat c is user ((c - 1) * members + k - 1) % users + 1 (lua/common.lua).
"""

from __future__ import annotations

import contextlib
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from app.dev.cluster import EmbeddedCluster, Node
from app.schema.migrate import upgrade
from tests.bench.servers import cpu_by_process, cpu_seconds


@dataclass(frozen=True)
class DataSet:
    """Sizes of the seeded data."""

    users: int = 1000
    chats: int = 100
    members: int = 10
    messages: int = 100_000

    def env(self) -> dict[str, str]:
        """The sizes as the wrk scripts read them."""
        return {
            "BENCH_USERS": str(self.users),
            "BENCH_CHATS": str(self.chats),
            "BENCH_MEMBERS": str(self.members),
            "BENCH_MESSAGES": str(self.messages),
        }


def seed_sql(data: DataSet) -> str:
    """One script: users, chats, members, messages (ids 1..n, oldest first), sequences."""
    u, c, m, n = data.users, data.chats, data.members, data.messages
    return f"""
INSERT INTO users (id, username, display_name, status, created_at, updated_at)
OVERRIDING SYSTEM VALUE
SELECT g, 'user_' || g, 'User ' || g, (ARRAY['online', 'offline', 'away'])[1 + g % 3],
       now() - interval '90 days', now() - interval '90 days'
FROM generate_series(1, {u}) AS g;

INSERT INTO chats (id, title, created_at) OVERRIDING SYSTEM VALUE
SELECT g, 'Chat ' || g, now() - interval '60 days' FROM generate_series(1, {c}) AS g;

INSERT INTO chat_members (chat_id, user_id)
SELECT DISTINCT ch, ((ch - 1) * {m} + k - 1) % {u} + 1
FROM generate_series(1, {c}) AS ch, generate_series(1, {m}) AS k;

INSERT INTO messages (id, chat_id, sender_id, body, client_msg_id, created_at)
OVERRIDING SYSTEM VALUE
SELECT g, chat, ((chat - 1) * {m} + member - 1) % {u} + 1,
       'seed message ' || g || ': ' || repeat(md5(g::text), 1 + g % 4),
       CASE WHEN g % 2 = 0 THEN 'seed-' || g END,
       now() - ({n} - g) * interval '25 seconds'
FROM (
    SELECT g, 1 + abs(hashint4(g)) % {c} AS chat, 1 + abs(hashint4(-g)) % {m} AS member
    FROM generate_series(1, {n}) AS g
) AS s;

SELECT setval(pg_get_serial_sequence('users', 'id'), {u});
SELECT setval(pg_get_serial_sequence('chats', 'id'), {c});
SELECT setval(pg_get_serial_sequence('messages', 'id'), {n});
"""  # noqa: S608 - only whole numbers of the DataSet are spliced in


class BenchCluster:
    """A fresh primary + one replica under `root` (deleted first), migrated and seeded."""

    def __init__(self, root: Path, data: DataSet) -> None:
        self.root = root
        self.data = data
        self.cluster = EmbeddedCluster(root, replicas=1)

    @property
    def primary(self) -> Node:
        return self.cluster.primary

    @property
    def replica(self) -> Node:
        return self.cluster.replicas[0]

    def start(self) -> float:
        """Create, migrate and seed; returns the seconds it took."""
        started = time.monotonic()
        if self.root.exists():
            EmbeddedCluster(self.root, replicas=1).destroy()
            shutil.rmtree(self.root, ignore_errors=True)
        self.cluster.start()
        upgrade(self.cluster.primary_url)
        self.primary.psql(seed_sql(self.data))
        self.primary.psql("VACUUM ANALYZE")
        self.enable_statement_stats()
        return time.monotonic() - started

    def server_version(self) -> str:
        return self.primary.psql("SHOW server_version")

    def processes(self) -> list[psutil.Process]:
        """Every PostgreSQL process of the cluster: postmasters and their children."""
        procs: list[psutil.Process] = []
        for node in [self.primary, *self.cluster.replicas]:
            try:
                pid = int((node.data_dir / "postmaster.pid").read_text().split()[0])
                postmaster = psutil.Process(pid)
                procs += [postmaster, *postmaster.children(recursive=True)]
            except (OSError, ValueError, psutil.Error):
                continue
        return procs

    def enable_statement_stats(self) -> None:
        """Load pg_stat_statements on every node (restarts them) to count statements."""
        line = "shared_preload_libraries = 'pg_stat_statements'\n"
        for node in [self.primary, *self.cluster.replicas]:
            with (node.data_dir / "postgresql.auto.conf").open("a") as conf:
                conf.write(line)
        for node in [*self.cluster.replicas, self.primary]:
            node.stop()
        for node in [self.primary, *self.cluster.replicas]:
            node.start()
        self.primary.psql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        self.cluster.wait_streaming()

    def reset_statement_stats(self) -> None:
        for node in [self.primary, *self.cluster.replicas]:
            node.psql("SELECT pg_stat_statements_reset()")

    def statement_stats(self) -> tuple[int, float, dict[str, int]]:
        """Statements and their execution milliseconds on all nodes since the last reset,
        and the calls of each statement (by node and text)."""
        calls, exec_ms = 0, 0.0
        by_statement: dict[str, int] = {}
        for node in [self.primary, *self.cluster.replicas]:
            rows = node.psql(
                "SELECT calls, total_exec_time, regexp_replace(left(query, 90), '\\s+', ' ', 'g')"
                " FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat_statements%'"
                " ORDER BY calls DESC"
            )
            for row in rows.splitlines():
                node_calls, node_ms, query = row.split("|", 2)
                calls += int(node_calls)
                exec_ms += float(node_ms)
                key = f"{node.name}: {query}"
                by_statement[key] = by_statement.get(key, 0) + int(node_calls)
        return calls, exec_ms, by_statement

    def page_reads(self) -> dict[str, int]:
        """Page statements (service's and baseline's keyset query) by node since the last reset:
        where the reads were served."""
        reads: dict[str, int] = {}
        for node in [self.primary, *self.cluster.replicas]:
            calls = node.psql(
                "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements"
                " WHERE query LIKE '%FROM messages WHERE chat_id = $1 AND id < $2%'"
            )
            reads[node.name] = int(float(calls or 0))
        return reads

    def cpu_seconds(self) -> float:
        """User + system CPU time of the cluster's live processes."""
        return cpu_seconds(self.processes())

    def cpu_snapshot(self) -> dict[int, float]:
        """CPU time of each of the cluster's live processes (`servers.cpu_used` takes two)."""
        return cpu_by_process(self.processes())

    def pin(self, cpus: list[int]) -> None:
        """Pin every server process (and so the backends they fork later) to `cpus`."""
        for proc in self.processes():
            with contextlib.suppress(psutil.Error):
                proc.cpu_affinity(cpus)

    def destroy(self) -> None:
        self.cluster.destroy()
