"""Fail readiness the moment the worker is told to stop (SIGTERM, SIGINT).

granian runs the ASGI lifespan shutdown only after it stopped serving and drained in-flight
requests, so the lifespan alone would flip readiness too late. Its worker handles SIGTERM and
SIGINT through the event loop (`loop.add_signal_handler`, which installs a Python-level
handler); we put our handler in front and call the one we replaced, so granian still drains
as before. The handler itself only sets a flag: logging happens on the loop, outside the
signal context (a lock held by the interrupted code could deadlock it otherwise).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

DRAIN_SIGNALS = (signal.SIGTERM, signal.SIGINT)

Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


def install_drain_handlers(
    on_signal: Callable[[str], None], announce: Callable[[str], None]
) -> Callable[[], None]:
    """Chain `on_signal` (signal-safe) and `announce` (run on the loop) before the current
    handlers of SIGTERM and SIGINT; returns a function that puts the previous ones back.

    Only the main thread may install signal handlers; elsewhere (a test client running the
    app in a thread) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    loop = asyncio.get_running_loop()
    previous: dict[int, Handler] = {}

    def handler(signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        on_signal(name)
        with contextlib.suppress(RuntimeError):  # the loop is already closed
            loop.call_soon_threadsafe(announce, name)
        _chain(previous[signum], signum, frame)

    for signum in DRAIN_SIGNALS:
        current = signal.getsignal(signum)
        if current is None or current == signal.SIG_IGN:
            continue  # ignored, or set outside Python (we could neither chain nor restore it)
        previous[signum] = current
        signal.signal(signum, handler)

    def restore() -> None:
        for signum, old in previous.items():
            if signal.getsignal(signum) is handler and old is not None:
                signal.signal(signum, old)

    return restore


def _chain(previous: Handler, signum: int, frame: FrameType | None) -> None:
    """Do what would have happened without us."""
    if callable(previous):
        previous(signum, frame)
    elif previous == signal.SIG_DFL:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
