"""The real entry point: `python -m app serve` runs granian and serves the API."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

from app.dev.cluster import EmbeddedCluster
from tests.support.api import register
from tests.support.cluster import TestDatabase, wait_until
from tests.support.server import ROOT, ServerProcess, free_port


def test_serves_and_stops_on_sigterm(database: TestDatabase) -> None:
    with ServerProcess(database) as server, httpx.Client(base_url=server.url) as client:
        register(client)  # registers (201) and logs in
        server.signal(signal.SIGTERM)
        assert server.wait(timeout_s=20) == 0
        assert "pools disposed" in server.logs()


def test_development_run_brings_its_own_cluster_and_ctrl_c_stops_all(tmp_path: Path) -> None:
    """`just run` on a machine with nothing: embedded cluster, migrations, API; Ctrl-C ends it."""
    data = Path(tempfile.mkdtemp(prefix="messenger-run-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "DB_", "APP_"))}
    env.update({"APP_DATA_DIR": str(data), "PORT": str(port), "HOST": "127.0.0.1"})
    log = tmp_path / "run.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "app", "serve"],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until(lambda: _ready(port) or process.poll() is not None, 120, "service ready")
        assert process.poll() is None, log.read_text()
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            register(client)  # and logs in, with the key `messenger serve` keeps for development
        env_file = (data / "postgres.env").read_text()
        assert env_file.startswith("DATABASE_URL=postgresql://")
        host_list = env_file.splitlines()[0].removeprefix("DATABASE_URL=postgresql://")
        assert host_list.count("127.0.0.1:") == 2, env_file  # the primary and the replica
        # The generated password is in the URLs (a file only its owner reads), nowhere else.
        password = (data / "pg" / "password").read_text().strip()
        assert host_list.startswith(f"postgres:{password}@"), env_file
        assert stat.S_IMODE((data / "postgres.env").stat().st_mode) == 0o600
        assert password not in log.read_text()
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        assert process.wait(timeout=60) == 0, log.read_text()
        assert "embedded PostgreSQL stopped" in log.read_text()
        assert password not in log.read_text()
        assert not EmbeddedCluster(data / "pg", replicas=1).is_running()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        EmbeddedCluster(data / "pg", replicas=1).destroy()


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
