"""A fleet behind a load balancer: service instances (`python -m app serve`, each with its own
granian workers) behind a real HAProxy that follows their readiness, a paced client load
through it, and the rolling restart the drill (tests/process/test_fleet.py) measures.

`python -m tests.support.fleet` (`just fleet`) runs the same fleet for a developer on the
embedded cluster; `kill -HUP` the runner for a rolling restart with its timeline.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Self

import httpx

from tests.support.api import user_with_a_chat
from tests.support.haproxy import HAProxy
from tests.support.processes import StartStop
from tests.support.server import ServiceProcess, free_port

READINESS_FAILED = "shutdown signal received; readiness now fails"


class Instance(ServiceProcess):
    """One service instance on a fixed port; restartable, its output appended to one file,
    which is kept (`just fleet` names it) when the fleet stops."""

    def __init__(self, name: str, port: int, env: dict[str, str]) -> None:
        service_env = {**env, "HOST": "127.0.0.1", "PORT": str(port)}
        super().__init__(name, port, service_env, f"messenger-{name}-")
        self.name = name
        self.address = f"127.0.0.1:{port}"
        self.log_path = self._managed.log

    def start(self, ready_timeout_s: float = 60.0) -> float:
        """Start and wait until its own readiness passes; the unix time it did."""
        self._serve(ready_timeout_s)
        return time.time()

    def terminate(self) -> float:
        """SIGTERM to `messenger serve` (as a kubelet or systemd would); the unix time."""
        self._managed.send_signal(signal.SIGTERM)
        return time.time()

    def stop(self, timeout_s: float = 30.0) -> None:
        self._managed.stop(timeout_s)

    def event_time(self, event: str, after: float) -> float | None:
        """Unix time of the first log line of `event` after `after` (JSON lines in
        production, console lines, which start with the timestamp, elsewhere)."""
        for line in self.logs().splitlines():
            if line.startswith("{"):
                record: dict[str, Any] = json.loads(line)
                if record.get("event") != event:
                    continue
                stamp = str(record["timestamp"])
            elif event in line:
                stamp = line.split(" ", 1)[0]
            else:
                continue
            try:
                at = datetime.fromisoformat(stamp).timestamp()
            except ValueError:
                continue
            if at >= after:
                return at
        return None


@dataclass
class Restart:
    """One instance's restart, unix times (`None`: not seen)."""

    instance: str
    signalled: float
    readiness_failed: float | None = None
    lb_down: float | None = None
    exited: float | None = None
    exit_code: int | None = None
    ready: float | None = None
    lb_up: float | None = None
    last_served: float | None = None  # by this instance before it exited (from the load)

    def timeline(self) -> str:
        def at(moment: float | None) -> str:
            return "-" if moment is None else f"+{(moment - self.signalled) * 1000:.0f} ms"

        return (
            f"{self.instance}: SIGTERM at 0; readiness failed {at(self.readiness_failed)};"
            f" HAProxy marked it DOWN {at(self.lb_down)};"
            f" last request served {at(self.last_served)};"
            f" exit {at(self.exited)} (code {self.exit_code});"
            f" ready again {at(self.ready)}; HAProxy UP {at(self.lb_up)}"
        )


class Fleet(StartStop):
    """`with Fleet(env) as fleet:` instances `a`, `b`, ... behind HAProxy at `fleet.url`."""

    def __init__(
        self,
        env: dict[str, str],
        *,
        instances: int = 2,
        port: int | None = None,
        stats_port: int | None = None,
        instance_ports: list[int] | None = None,
    ) -> None:
        ports = instance_ports or [free_port() for _ in range(instances)]
        self.instances = [
            Instance(chr(ord("a") + index), ports[index], env) for index in range(instances)
        ]
        self.lb = HAProxy(
            {instance.name: instance.address for instance in self.instances},
            port=port or free_port(),
            stats_port=stats_port or free_port(),
        )
        self.url = self.lb.url

    def start(self) -> Self:
        for instance in self.instances:
            instance.start()
        self.lb.start()
        for instance in self.instances:
            self.lb.wait_state(instance.name, "UP")
        return self

    def stop(self) -> None:
        self.lb.stop()
        for instance in self.instances:
            instance.stop()

    def restart(self, instance: Instance, timeout_s: float = 60.0) -> Restart:
        """SIGTERM, wait until it exited (and HAProxy took it out), start it, wait until it
        is ready and HAProxy has it back in: one step of a rolling restart."""
        restart = Restart(instance.name, instance.terminate())
        deadline = time.monotonic() + timeout_s
        assert instance.process is not None
        while restart.exited is None or restart.lb_down is None:
            now = time.time()
            if restart.lb_down is None and self.lb.states().get(instance.name, "").startswith(
                "DOWN"
            ):
                restart.lb_down = now
            if restart.exited is None and instance.process.poll() is not None:
                restart.exited = now
                restart.exit_code = instance.process.returncode
            if time.monotonic() > deadline:
                raise AssertionError(f"{instance.name}: not down and exited in {timeout_s}s")
            time.sleep(0.01)
        restart.readiness_failed = instance.event_time(READINESS_FAILED, restart.signalled)
        restart.ready = instance.start()
        restart.lb_up = self.lb.wait_state(instance.name, "UP", timeout_s)
        return restart


@dataclass(frozen=True)
class Result:
    """One request of the load: when, what, and how it ended."""

    at: float  # unix time it was sent
    latency_s: float
    kind: str  # "read" | "send"
    status: int | None  # None: no HTTP answer
    server: str | None  # HAProxy's X-Served-By
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.status is None or not 200 <= self.status < 300


@dataclass
class Load:
    """Paced requests through the load balancer: `threads` clients (keep-alive), together
    `rate` requests a second, two reads of a chat's newest messages per send (each send with
    a fresh `client_msg_id`); bounded by `max_s` and `max_requests`, stops by itself."""

    url: str
    member: Member
    rate: float = 150.0
    threads: int = 4
    max_s: float = 120.0
    max_requests: int = 40_000
    results: list[Result] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Load:
        for index in range(self.threads):
            worker = threading.Thread(target=self._run, args=(index,), daemon=True)
            self._workers.append(worker)
            worker.start()
        return self

    def stop(self) -> list[Result]:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=20)
        return sorted(self.results, key=lambda result: result.at)

    def _run(self, index: int) -> None:
        interval = self.threads / self.rate
        began = time.monotonic() + index * interval / self.threads
        per_thread = self.max_requests // self.threads
        with httpx.Client(base_url=self.url, headers=self.member.headers, timeout=10) as client:
            for step in range(per_thread):
                due = began + step * interval  # drift-free pacing
                if self._stop.wait(max(0.0, due - time.monotonic())):
                    return
                if time.monotonic() - began > self.max_s:
                    return
                self.results.append(self._one(client, "send" if step % 3 == 0 else "read"))

    def _one(self, client: httpx.Client, kind: str) -> Result:
        at, started = time.time(), time.monotonic()
        try:
            if kind == "send":
                key = uuid.uuid4().hex
                body = {"body": f"m {key}", "client_msg_id": key}
                response = client.post(f"/chats/{self.member.chat_id}/messages", json=body)
            else:
                response = client.get(f"/chats/{self.member.chat_id}/messages?limit=5")
        except httpx.HTTPError as error:
            return Result(at, time.monotonic() - started, kind, None, None, type(error).__name__)
        return Result(
            at,
            time.monotonic() - started,
            kind,
            response.status_code,
            response.headers.get("x-served-by"),
            None if response.is_success else response.text[:200],
        )


@dataclass(frozen=True)
class Member:
    """A user with a chat of their own, and what their requests carry (their access token)."""

    chat_id: int
    user_id: int
    headers: dict[str, str]


def make_member(url: str) -> Member:
    """A user who has logged in and a chat of theirs, created through `url`."""
    account, chat_id = user_with_a_chat(url)
    return Member(chat_id, account.id, account.headers)


def main() -> int:
    """`just fleet`: two instances (WORKERS=2 each) on the embedded cluster behind HAProxy."""
    from app.dev import local
    from app.schema.migrate import upgrade

    if "DATABASE_URL" in os.environ:
        urls: dict[str, str] = {"DATABASE_URL": os.environ["DATABASE_URL"]}
        started_cluster = False
    else:
        urls, started_cluster = local.start()
        upgrade(urls["DATABASE_URL"])
    env = {
        "WORKERS": "2",
        "DRAIN_DELAY_S": "2",
        **os.environ,
        **urls,
        "PROMETHEUS_MULTIPROC_DIR": "",  # each instance makes its own
    }
    port = int(os.environ.get("FLEET_PORT", "8080"))
    rolling = threading.Event()
    signal.signal(signal.SIGHUP, lambda signum, frame: rolling.set())
    try:
        with Fleet(
            env, port=port, stats_port=port + 324, instance_ports=[port + 1, port + 2]
        ) as fleet:
            print(
                f"fleet: http://127.0.0.1:{port} (HAProxy; stats"
                f" http://127.0.0.1:{port + 324}/stats)\n"
                + "".join(
                    f"  instance {i.name}: {i.url}, log {i.log_path}\n" for i in fleet.instances
                )
                + f"  kill -HUP {os.getpid()} for a rolling restart; Ctrl-C stops everything",
                flush=True,
            )
            while True:
                if rolling.wait(0.5):
                    rolling.clear()
                    for instance in fleet.instances:
                        print(f"[timing] {fleet.restart(instance).timeline()}", flush=True)
                for instance in fleet.instances:
                    if not instance.running():
                        print(f"instance {instance.name} exited; starting it again", flush=True)
                        instance.start()
    except KeyboardInterrupt:
        print("stopping the fleet", file=sys.stderr)
    finally:
        if started_cluster:
            local.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
