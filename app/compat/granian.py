"""granian behaviour the process relies on: how it handles the stop signals.

Written for granian 2.8 (`WRITTEN_FOR`; 2.8.9 installed when written).

`app.process.signals` chains its drain handlers in front of granian's: it relies on granian
installing Python-level handlers for SIGTERM and SIGINT in the worker (`signal.getsignal`
returns a callable it can call after its own), on SIGINT starting the same graceful stop as
SIGTERM (so a delayed stop is a SIGINT to itself), and on the lifespan shutdown running only
after the drain. This reads no private attribute; the version range is recorded so an
upgrade is checked against tests/process/test_shutdown.py and test_drain_delay's drills.
"""

from __future__ import annotations

import signal

WRITTEN_FOR = ("granian", "2.8", "2.9")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
"""The signals granian stops on gracefully, each with a Python-level handler."""
