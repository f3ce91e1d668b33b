"""A real HAProxy (Debian's package) in front of service instances, from the project's
template (deploy/haproxy/haproxy.cfg.template): for the rolling-restart drill and `just fleet`.
"""

from __future__ import annotations

import csv
import io
import shutil
import string
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Self

import httpx

from tests.support.processes import ManagedProcess, StartStop

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "deploy" / "haproxy" / "haproxy.cfg.template"


def haproxy_binary() -> str | None:
    """Path of the haproxy program (Debian installs it in /usr/sbin), or None."""
    return shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/bin")


def render(servers: dict[str, str], *, bind: str, stats_bind: str) -> str:
    """The template with the frontend's and the stats page's addresses and one `server`
    line per instance (`name` -> `host:port`), health-checked as the template says."""
    lines = "\n".join(f"    server {name} {address} check" for name, address in servers.items())
    return string.Template(TEMPLATE.read_text()).substitute(
        bind=bind, stats_bind=stats_bind, servers=lines
    )


class HAProxy(StartStop):
    """`with HAProxy({"a": "127.0.0.1:8001"}, port=8080, stats_port=8404) as lb:`."""

    def __init__(self, servers: dict[str, str], *, port: int, stats_port: int) -> None:
        binary = haproxy_binary()
        if binary is None:
            raise RuntimeError("haproxy is not installed (apt-get install haproxy)")
        self._binary = binary
        self.servers = servers
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.stats_url = f"http://127.0.0.1:{stats_port}/stats;csv"
        self._dir = Path(tempfile.mkdtemp(prefix="messenger-haproxy-"))
        self.config = self._dir / "haproxy.cfg"
        self.config.write_text(
            render(servers, bind=f"127.0.0.1:{port}", stats_bind=f"127.0.0.1:{stats_port}")
        )
        self._managed = ManagedProcess("haproxy", self._dir / "haproxy.log")

    def check_config(self) -> None:
        """`haproxy -c`: the rendered configuration is valid."""
        result = subprocess.run(
            [self._binary, "-c", "-f", str(self.config)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if result.returncode != 0:
            raise AssertionError(f"haproxy -c failed:\n{result.stdout}{result.stderr}")

    def start(self, timeout_s: float = 15.0) -> Self:
        self.check_config()
        # -db: stay in the foreground, no daemon (the caller owns the process).
        command = [self._binary, "-db", "-f", str(self.config)]
        self._managed.start(command, self._answering, timeout_s)
        return self

    def _answering(self) -> bool:
        try:
            self.states()
        except httpx.HTTPError:
            return False
        return True

    def states(self) -> dict[str, str]:
        """Each server's status as HAProxy sees it now (`UP`, `DOWN`, `UP 1/2`, ...)."""
        text = httpx.get(self.stats_url, timeout=2).text.lstrip("# ")
        rows = csv.DictReader(io.StringIO(text))
        return {
            row["svname"]: row["status"]
            for row in rows
            if row["pxname"] == "messenger" and row["svname"] in self.servers
        }

    def wait_state(self, server: str, status: str, timeout_s: float = 30.0) -> float:
        """Poll (every 20 ms) until `server` is `status`; the unix time it was first seen."""
        deadline = time.monotonic() + timeout_s
        while True:
            if self.states().get(server) == status:
                return time.time()
            if time.monotonic() > deadline:
                raise AssertionError(f"{server} not {status} in {timeout_s}s: {self.states()}")
            time.sleep(0.02)

    def logs(self) -> str:
        return self._managed.logs()

    def stop(self) -> None:
        self._managed.stop(10)
        shutil.rmtree(self._dir, ignore_errors=True)
