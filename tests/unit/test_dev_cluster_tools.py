"""The development cluster finds administration tools where root's PATH may not look, and
says in one line what is missing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.dev.cluster import SYSTEM_TOOL_DIRS, EmbeddedClusterError, system_tool


def test_a_tool_outside_path_is_found_in_the_system_directories(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    installed = [Path(folder) / "useradd" for folder in SYSTEM_TOOL_DIRS]
    if not any(path.exists() for path in installed):
        pytest.skip("useradd is not installed on this machine")
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # as for a root shell without /usr/sbin
    found = Path(system_tool("useradd"))
    assert found.name == "useradd"
    assert str(found.parent) in SYSTEM_TOOL_DIRS
    assert os.access(found, os.X_OK)


def test_a_missing_tool_is_named_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(EmbeddedClusterError) as caught:
        system_tool("no-such-admin-tool")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("no-such-admin-tool not found")
    assert "/usr/sbin" in message
