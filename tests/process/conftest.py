"""Tests of the real service process (`python -m app serve`, granian): slow by folder.

Every test collected here is marked `slow`, so `just test` (`-m "not slow"`) leaves them out
and `just test-all` runs them. Those that stop or pause servers ask for `fault_cluster`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

_HERE = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in item.path.resolve().parents:
            item.add_marker(pytest.mark.slow)
