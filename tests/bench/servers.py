"""The two servers under test, each a granian process tree, and their memory."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from functools import partial
from pathlib import Path

import psutil

from tests.support.processes import ManagedProcess, StartFailed, new_log

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (never 8000, which `just run` uses)."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port != 8000:
            return port


def http(
    url: str,
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout_s: float = 5,
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request to our own server on 127.0.0.1: (status, headers, body)."""
    if not url.startswith("http://127.0.0.1:"):
        raise ValueError("the bench only talks to its own servers on 127.0.0.1")
    request = urllib.request.Request(  # noqa: S310 - http on loopback, checked above
        url, data=body, headers=headers or {}, method="POST" if body is not None else "GET"
    )
    with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
        return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()


def taskset(cpus: str | None) -> list[str]:
    """The command prefix that pins a process tree to `cpus` ('0', '0-1'), or nothing."""
    return ["taskset", "-c", cpus] if cpus else []


class Server:
    """A granian process tree: `python -m app serve` (the service) or the baseline app."""

    def __init__(
        self, name: str, command: list[str], env: dict[str, str], cwd: Path = ROOT
    ) -> None:
        self.name = name
        self.cwd = cwd
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._command = command
        self._env = {**os.environ, **env, "HOST": "127.0.0.1", "PORT": str(self.port)}
        self._managed = ManagedProcess(name, new_log(f"bench-{name}-"))

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        return self._managed.popen

    @classmethod
    def service(
        cls, env: dict[str, str], workers: int, cpus: str | None, cwd: Path = ROOT
    ) -> Server:
        """The service as production runs it (`python -m app serve` -> granian, uvloop);
        `cwd`: another copy of the tree, whose `app` then comes first on `sys.path`."""
        command = [*taskset(cpus), sys.executable, "-m", "app", "serve"]
        return cls("service", command, {**env, "WORKERS": str(workers)}, cwd)

    @classmethod
    def baseline(cls, env: dict[str, str], workers: int, cpus: str | None) -> Server:
        """The baseline, served by granian with the flags `python -m app serve` uses."""
        command = [
            *taskset(cpus), sys.executable, "-m", "granian",
            "--interface", "asgi", "--host", "127.0.0.1", "--port", "{port}",
            "--workers", str(workers), "--loop", "uvloop", "--no-ws",
            "tests.bench.baseline:app",
        ]  # fmt: skip
        return cls("baseline", command, env)

    def start(
        self, probe_path: str, headers: dict[str, str] | None = None, timeout_s: float = 60.0
    ) -> Server:
        """Start and wait until `probe_path` answers 200 (to a request with `headers`)."""
        command = [part.replace("{port}", str(self.port)) for part in self._command]
        ready = partial(self._answers, probe_path, headers)
        try:
            self._managed.start(command, ready, timeout_s, poll_s=0.1, cwd=self.cwd, env=self._env)
        except StartFailed:
            self.stop()  # its log too
            raise
        return self

    def _answers(self, probe_path: str, headers: dict[str, str] | None) -> bool:
        try:
            return http(self.url + probe_path, headers=headers, timeout_s=2)[0] == 200
        except (urllib.error.URLError, OSError):
            return False

    def processes(self) -> list[psutil.Process]:
        """The whole tree: launcher, granian's main process and its workers."""
        if self.process is None or self.process.poll() is not None:
            return []
        try:
            root = psutil.Process(self.process.pid)
            return [root, *root.children(recursive=True)]
        except psutil.Error:
            return []

    def workers(self) -> list[psutil.Process]:
        """Granian's worker processes: the leaves of the tree."""
        procs = self.processes()
        leaves = []
        for proc in procs:
            try:
                if not proc.children():
                    leaves.append(proc)
            except psutil.Error:
                pass
        return leaves

    def rss(self) -> tuple[int, int]:
        """(sum of RSS over granian's processes, largest worker RSS), in bytes.

        The service's launcher (`python -m app serve`, which only waits for granian) is
        left out so both servers are measured alike.
        """
        total = 0
        for proc in self.processes():
            try:
                if "granian" in " ".join(proc.cmdline()):
                    total += proc.memory_info().rss
            except psutil.Error:
                pass
        worst = 0
        for proc in self.workers():
            with contextlib.suppress(psutil.Error):
                worst = max(worst, proc.memory_info().rss)
        return total, worst

    def cpu_seconds(self) -> float:
        """User + system CPU time of the whole tree so far."""
        return cpu_seconds(self.processes())

    def cpu_snapshot(self) -> dict[int, float]:
        """CPU time of each process of the tree so far (`cpu_used` takes two)."""
        return cpu_by_process(self.processes())

    def logs(self) -> str:
        return self._managed.logs()

    def stop(self) -> None:
        """SIGTERM the tree (granian drains), SIGKILL it after 20 s; its log goes."""
        self._managed.stop(20, whole_group=True)
        self._managed.remove_log()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def cpu_seconds(processes: list[psutil.Process]) -> float:
    """User + system CPU time of `processes`, ignoring those that have gone."""
    return sum(cpu_by_process(processes).values())


def cpu_by_process(processes: list[psutil.Process]) -> dict[int, float]:
    """User + system CPU time of each of `processes` by pid, ignoring those that have gone."""
    seconds: dict[int, float] = {}
    for proc in processes:
        try:
            times = proc.cpu_times()
        except psutil.Error:
            continue
        seconds[proc.pid] = times.user + times.system
    return seconds


def cpu_used(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU time used between two `cpu_by_process` snapshots by the processes alive at the
    second (new ones count whole). A process that exited in between is left out rather than
    subtracted: a PostgreSQL backend or autovacuum worker that ended mid-run once made the
    cluster's CPU per request come out near zero."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


class RssSampler:
    """Samples a server's RSS every `interval_s` in a thread; keeps the peak."""

    def __init__(self, server: Server, interval_s: float = 0.5) -> None:
        self._server = server
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.peak_total = 0
        self.peak_worker = 0

    def _run(self) -> None:
        while not self._stop.is_set():
            total, worker = self._server.rss()
            self.peak_total = max(self.peak_total, total)
            self.peak_worker = max(self.peak_worker, worker)
            self._stop.wait(self._interval_s)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
