"""A real service process (`python -m app serve`, i.e. granian) for process-level tests.

Under pytest it runs only for tests in tests/process/, which are slow by folder (a test
elsewhere that starts one fails at once, instead of slowing the fast suite down)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Self

import httpx

from tests.support.cluster import TestDatabase
from tests.support.processes import ManagedProcess, StartStop, new_log

ROOT = Path(__file__).resolve().parents[2]
PROCESS_TESTS = "tests/process/"
SERVE = (sys.executable, "-m", "app", "serve")  # run in ROOT


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def require_process_test() -> None:
    """Fail a test outside tests/process/ that starts a real service: such tests are slow,
    and only that folder is left out of the fast suite."""
    test = os.environ.get("PYTEST_CURRENT_TEST")
    if test is not None and not test.startswith(PROCESS_TESTS):
        raise AssertionError(f"{test}: tests of a real server process go in {PROCESS_TESTS}")


def answers_ready(url: str) -> bool:
    """The service at `url` passes its readiness check now (no answer yet: it does not)."""
    try:
        return httpx.get(f"{url}/health/ready", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


class ServiceProcess:
    """`python -m app serve` (run in the checkout with exactly `env`) answering on `port`,
    its output in a new temporary log (`log_prefix`...): what a test's `ServerProcess` and a
    fleet's `Instance` share."""

    def __init__(self, name: str, port: int, env: dict[str, str], log_prefix: str) -> None:
        require_process_test()
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._env = env
        self._managed = ManagedProcess(name, new_log(log_prefix))

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        return self._managed.popen

    def _serve(self, ready_timeout_s: float) -> None:
        """Start it and wait until its own readiness passes."""
        ready = partial(answers_ready, self.url)
        self._managed.start(SERVE, ready, ready_timeout_s, cwd=ROOT, env=self._env)

    def running(self) -> bool:
        return self._managed.running()

    def kill(self) -> None:
        self._managed.kill()

    def logs(self) -> str:
        return self._managed.logs()


class ServerProcess(ServiceProcess, StartStop):
    """`with ServerProcess(database, WORKERS="2") as server:`; its output in `server.logs()`."""

    def __init__(self, database: TestDatabase, **env: str) -> None:
        port = free_port()
        service_env = {
            **os.environ,
            **database.env(),
            "HOST": "127.0.0.1",
            "PORT": str(port),
            **env,
        }
        super().__init__("server", port, service_env, "messenger-server-")

    def start(self, ready_timeout_s: float = 30.0) -> Self:
        self._serve(ready_timeout_s)
        return self

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self._managed.send_signal(signum)

    def wait(self, timeout_s: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout_s)

    def stop(self) -> None:
        """SIGTERM (the service drains), 20 s to exit, then SIGKILL; its log goes."""
        self._managed.stop(20)
        self._managed.remove_log()
