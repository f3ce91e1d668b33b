"""A child process that a test or the bench owns, from its start to its stop.

The service (`ServerProcess`, the fleet's instances, the bench's servers), HAProxy and PgBouncer
are all run the same way: in a session of their own with their output in a log file, polled
until a readiness condition holds or a deadline passes, and stopped with SIGTERM, a grace
period, then SIGKILL. One helper does it for all of them, so that no launcher leaks a process
tree or hides, when a start fails, what the process said.
"""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Self

LOG_TAIL = 3000  # characters of its log that a failed start shows (a log may hold many runs)
KILL_WAIT_S = 10.0  # for a process to be reaped after SIGKILL


class StartFailed(AssertionError, RuntimeError):
    """The process exited, or was not ready in time. An AssertionError, so that a test that
    starts one fails as a failed check does (`pytest.raises(AssertionError)` matches it); a
    RuntimeError too, which is what the bench, a program and no test, raises."""


def new_log(prefix: str) -> Path:
    """A new, empty temporary log file (mode 0600), kept until its owner removes it."""
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=".log")
    os.close(fd)
    return Path(name)


class ManagedProcess:
    """One command run in a session of its own (a signal to the session reaches its whole
    tree, granian's workers included), named `name` in what it reports, its log in `log`.

    With `capture_output` (the default) the command's stdout and stderr are appended to `log`;
    without, they are discarded and `log` is a file the program writes itself (PgBouncer's
    `logfile`, which as root it writes as another user). The caller removes the log when it
    wants it gone (`remove_log`)."""

    def __init__(self, name: str, log: Path, *, capture_output: bool = True) -> None:
        self.name = name
        self.log = log
        self._capture_output = capture_output
        self.popen: subprocess.Popen[bytes] | None = None

    def start(
        self,
        command: Sequence[str],
        ready: Callable[[], bool],
        timeout_s: float,
        *,
        poll_s: float = 0.05,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        run_as: pwd.struct_passwd | None = None,
    ) -> None:
        """Start `command` and poll `ready` every `poll_s` until it holds. A process that
        exits first, or is not ready after `timeout_s` (it is killed then), raises StartFailed
        with the end of its log."""
        with ExitStack() as files:
            output: IO[bytes] | int = (
                files.enter_context(self.log.open("ab"))
                if self._capture_output
                else subprocess.DEVNULL
            )
            self.popen = subprocess.Popen(
                command,
                cwd=cwd,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
                user=run_as.pw_uid if run_as else None,
                group=run_as.pw_gid if run_as else None,
                extra_groups=[] if run_as else None,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while True:
            if self.popen.poll() is not None:
                raise StartFailed(
                    f"{self.name} exited with {self.popen.returncode}:\n{self.tail()}"
                )
            if ready():
                return
            if time.monotonic() > deadline:
                self.kill()
                raise StartFailed(f"{self.name} not ready in {timeout_s}s:\n{self.tail()}")
            time.sleep(poll_s)

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def send_signal(self, signum: int) -> None:
        """`signum` to the process itself (as a kubelet or systemd sends SIGTERM)."""
        assert self.popen is not None
        self.popen.send_signal(signum)

    def stop(self, grace_s: float, *, whole_group: bool = False) -> None:
        """SIGTERM to the process (or, with `whole_group`, to its whole session), `grace_s`
        for it to exit, then `kill`; nothing when it is not running."""
        if not self.running():
            return
        assert self.popen is not None
        if whole_group:
            os.killpg(self.popen.pid, signal.SIGTERM)
        else:
            self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL to its whole session, so that no child outlives it; waits until reaped."""
        if self.running():
            assert self.popen is not None
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=KILL_WAIT_S)

    def logs(self) -> str:
        """Its log so far ("" before there is one or after it was removed)."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def tail(self) -> str:
        return self.logs()[-LOG_TAIL:]

    def remove_log(self) -> None:
        self.log.unlink(missing_ok=True)


class StartStop(ABC):
    """`with thing:` starts it and always stops it, also when the start itself fails, so
    that what a failed start leaves (a process that never became ready, a log, a folder)
    goes too."""

    @abstractmethod
    def start(self) -> Self: ...

    @abstractmethod
    def stop(self) -> None: ...

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()
