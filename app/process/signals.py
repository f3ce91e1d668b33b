"""Fail readiness the moment the worker is told to stop (SIGTERM, SIGINT).

granian runs the ASGI lifespan shutdown only after it stopped serving and drained in-flight
requests, so the lifespan alone would flip readiness too late. Its worker handles SIGTERM and
SIGINT through the event loop (`loop.add_signal_handler`, which installs a Python-level
handler); we put our handler in front and call the one we replaced, so granian still drains
as before. The handler itself only sets a flag: logging happens on the loop, outside the
signal context (a lock held by the interrupted code could deadlock it otherwise).

Under uvloop a loop's signal callbacks are dispatched from its wakeup file descriptor, not by
the Python-level handler, so chaining cannot postpone granian's stop. With a drain delay
(`DRAIN_DELAY_S`) SIGTERM's loop callback is therefore replaced: readiness fails at once, the
worker keeps accepting for the delay (a load balancer's health checks see the failure while
the listener is still open), then it sends itself SIGINT, which granian's own callback still
handles: the graceful stop granian would have begun at SIGTERM. SIGINT (Ctrl-C) is never
delayed.
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
    on_signal: Callable[[str], None],
    announce: Callable[[str], None],
    *,
    sigterm_delay_s: float = 0.0,
) -> Callable[[], None]:
    """Chain `on_signal` (signal-safe) and `announce` (run on the loop) before the current
    handlers of SIGTERM and SIGINT; returns a function that puts the previous ones back.

    With `sigterm_delay_s` > 0, SIGTERM fails readiness at once and stops the server that
    much later (see the module's docstring). Only the main thread may install signal
    handlers; elsewhere (a test client running the app in a thread) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    loop = asyncio.get_running_loop()
    previous: dict[int, Handler] = {}
    # The delayed stop is a SIGINT to ourselves: only when something handles SIGINT.
    delayed = sigterm_delay_s > 0 and callable(signal.getsignal(signal.SIGINT))
    stop_sent = [False]  # the SIGINT that ends a drain delay is ours: announced already

    def handler(signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if not (signum == signal.SIGINT and stop_sent[0]):
            on_signal(name)
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                loop.call_soon_threadsafe(announce, name)
        _chain(previous[signum], signum, frame)

    def stop_now() -> None:
        stop_sent[0] = True
        os.kill(os.getpid(), signal.SIGINT)

    term_seen = [False]

    def delayed_sigterm() -> None:  # on the loop, in place of granian's SIGTERM callback
        if term_seen[0]:
            return
        term_seen[0] = True
        on_signal("SIGTERM")
        announce("SIGTERM")
        loop.call_later(sigterm_delay_s, stop_now)

    for signum in DRAIN_SIGNALS:
        if signum == signal.SIGTERM and delayed:
            continue  # a loop callback instead (below); left in place at restore
        current = signal.getsignal(signum)
        if current is None or current == signal.SIG_IGN:
            continue  # ignored, or set outside Python (we could neither chain nor restore it)
        previous[signum] = current
        signal.signal(signum, handler)
    if delayed:
        loop.add_signal_handler(signal.SIGTERM, delayed_sigterm)

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
