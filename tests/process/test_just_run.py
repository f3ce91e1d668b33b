"""`just run` in a terminal, as a newcomer runs it: the development cluster, the API, and
Ctrl-C that ends everything cleanly: exit 0, and no `error: interrupted by SIGINT` from just
(`messenger serve` takes the terminal's foreground for its own process group, so Ctrl-C
reaches only the service). Skipped when `just` is not on PATH."""

from __future__ import annotations

import fcntl
import os
import pty
import shutil
import subprocess
import tempfile
import termios
import threading
import time
from pathlib import Path

import httpx
import pytest

from app.dev.cluster import EmbeddedCluster
from tests.support.cluster import wait_until
from tests.support.server import ROOT, free_port

JUST = shutil.which("just")


def _controlling_terminal() -> None:
    """In the child, after `setsid`: its standard input (the pty) becomes its terminal."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.skipif(JUST is None, reason="just is not on PATH (.ci/run installs it)")
def test_ctrl_c_under_just_run_ends_cleanly() -> None:
    assert JUST is not None
    data = Path(tempfile.mkdtemp(prefix="messenger-just-run-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "DB_", "APP_"))}
    env.update({"APP_DATA_DIR": str(data), "PORT": str(port), "HOST": "127.0.0.1"})
    master, slave = pty.openpty()
    output = bytearray()

    def drain() -> None:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the last process holding the terminal is gone
                return
            if not chunk:
                return
            output.extend(chunk)

    process = subprocess.Popen(
        [JUST, "run"],
        cwd=ROOT,
        env=env,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
        preexec_fn=_controlling_terminal,  # noqa: PLW1509 - only an ioctl, no locks taken
    )
    os.close(slave)
    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        wait_until(lambda: _ready(port) or process.poll() is not None, 180, "just run ready")
        assert process.poll() is None, output.decode(errors="replace")
        os.write(master, b"\x03")  # Ctrl-C, as typed: the terminal signals its foreground
        code = process.wait(timeout=60)
        reader.join(timeout=5)
        text = output.decode(errors="replace")
        assert code == 0, text
        assert "interrupted" not in text, text
        assert "error" not in text.lower(), text
        assert "embedded PostgreSQL stopped" in text, text
        deadline = time.monotonic() + 10
        while EmbeddedCluster(data / "pg", replicas=1).is_running():
            assert time.monotonic() < deadline, "the cluster is still running"
            time.sleep(0.2)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, 9)
            process.wait(timeout=10)
        os.close(master)
        EmbeddedCluster(data / "pg", replicas=1).destroy()
        shutil.rmtree(data, ignore_errors=True)
