"""The lint configuration keeps its security rules: string-built SQL (ruff's S608) is flagged
everywhere, and allowed only on the lines that say why."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_NOQA_S608 = re.compile(r"#\s*noqa:[^#\n]*\bS608\b(?P<rest>[^\n]*)")


def _ruff_lint() -> dict[str, object]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    lint = config["tool"]["ruff"]["lint"]
    assert isinstance(lint, dict)
    return lint


def test_string_built_sql_is_not_ignored_globally_or_per_file() -> None:
    lint = _ruff_lint()
    assert "S608" not in lint.get("ignore", [])  # type: ignore[operator]
    per_file = lint.get("per-file-ignores", {})
    assert isinstance(per_file, dict)
    assert all("S608" not in codes for codes in per_file.values()), per_file


def test_every_s608_exception_gives_a_reason() -> None:
    found = []
    for path in [*ROOT.glob("app/**/*.py"), *ROOT.glob("tests/**/*.py")]:
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            match = _NOQA_S608.search(line)
            if match is None:
                continue
            found.append(f"{path.relative_to(ROOT)}:{number}")
            reason = match.group("rest").strip(" -:")
            assert len(reason) >= 10, f"{path.relative_to(ROOT)}:{number}: no reason given"
    assert found, "no S608 exception at all: the repositories' constant column lists need one"
