"""Messenger data service: Litestar API over a primary/replica-aware PostgreSQL data layer."""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    """`app.create_app`, looked up lazily: Litestar's command line, run in the checkout
    without `LITESTAR_APP`, discovers the package `app` and calls its `create_app()`
    (`app.tooling`); importing `app` alone stays free."""
    if name == "create_app":
        from app.tooling import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
