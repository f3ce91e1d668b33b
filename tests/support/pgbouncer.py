"""A real PgBouncer (transaction pooling) in front of servers of the embedded cluster.

PgBouncer refuses to run as root, so as root it runs as the cluster's system user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Self

from app.dev.cluster import SYSTEM_USER
from tests.support.processes import ManagedProcess, StartStop
from tests.support.server import free_port


def pgbouncer_binary() -> str | None:
    """Path of the pgbouncer program (Debian installs it in /usr/sbin), or None."""
    return shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/usr/bin")


class PgBouncer(StartStop):
    """`with PgBouncer({"primary": port}) as bouncer:`; `bouncer.url("primary")`."""

    def __init__(
        self, databases: dict[str, int], *, pool_size: int = 4, password: str | None = None
    ) -> None:
        binary = pgbouncer_binary()
        if binary is None:
            raise RuntimeError("pgbouncer is not installed (apt-get install pgbouncer)")
        self._binary = binary
        self.port = free_port()
        self._databases = databases
        self._pool_size = pool_size
        self._password = password  # the servers' (clients need none: auth_type = any)
        self._dir = Path(tempfile.mkdtemp(prefix="messenger-pgbouncer-"))
        self._user = pwd.getpwnam(SYSTEM_USER) if os.geteuid() == 0 else None
        # Its output is discarded: it writes its own log file, as its user when we are root.
        self._managed = ManagedProcess(
            "pgbouncer", self._dir / "pgbouncer.log", capture_output=False
        )

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _write_config(self) -> Path:
        secret = f" password={self._password}" if self._password else ""
        entries = "".join(
            f"{name} = host=127.0.0.1 port={port} dbname=messenger user=postgres{secret}\n"
            for name, port in self._databases.items()
        )
        ini = self._dir / "pgbouncer.ini"
        ini.write_text(
            "[databases]\n"
            f"{entries}"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = any\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {self._pool_size}\n"
            "max_client_conn = 500\n"
            "server_reset_query =\n"
            f"logfile = {self._managed.log}\n"
            f"pidfile = {self._dir / 'pgbouncer.pid'}\n"
        )
        ini.chmod(0o600)  # it holds the servers' password
        if self._user is not None:
            for path in (self._dir, ini):
                os.chown(path, self._user.pw_uid, self._user.pw_gid)
        return ini

    def start(self, timeout_s: float = 15.0) -> Self:
        ini = self._write_config()
        self._managed.start(
            [self._binary, str(ini)],
            self._accepting,
            timeout_s,
            poll_s=0.02,
            cwd=self._dir,
            run_as=self._user,
        )
        return self

    def _accepting(self) -> bool:
        with socket.socket() as probe:
            probe.settimeout(0.5)
            return probe.connect_ex(("127.0.0.1", self.port)) == 0

    def logs(self) -> str:
        return self._managed.logs()

    def stop(self) -> None:
        self._managed.stop(10)
        shutil.rmtree(self._dir, ignore_errors=True)
