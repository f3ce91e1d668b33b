"""`messenger migrate` follows the same TLS rules as the pools: with `DB_SSLMODE` asking for
TLS it refuses a server that has none (the embedded cluster has none), in one line, with no
traceback and no URL, and changes nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.support.cluster import TestDatabase

ROOT = Path(__file__).resolve().parents[2]


def _migrate(**env: str) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DB_", "DATABASE_", "APP_", "TEST_DATABASE"))
    }
    return subprocess.run(
        [sys.executable, "-m", "app", "migrate"],
        cwd=ROOT,
        env={**clean, "APP_ENV": "test", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _host_list(database: TestDatabase) -> str:
    """The shared cluster as one libpq host list (the primary and the replicas)."""
    first = urlsplit(database.primary_url)
    hosts = ",".join(urlsplit(url).netloc.rpartition("@")[2] for url in [
        database.primary_url, *database.replica_urls
    ])  # fmt: skip
    credentials = first.netloc.rpartition("@")[0]
    return f"{first.scheme}://{credentials}@{hosts}{first.path}"


@pytest.mark.parametrize("sslmode", ["require", "verify-ca", "verify-full"])
@pytest.mark.parametrize("topology", ["primary", "host list"])
def test_migrate_refuses_a_server_without_tls(
    database: TestDatabase, sslmode: str, topology: str
) -> None:
    url = database.primary_url if topology == "primary" else _host_list(database)
    result = _migrate(DATABASE_URL=url, DB_SSLMODE=sslmode)
    output = result.stderr + result.stdout
    assert result.returncode == 2, output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, output
    assert lines[0].startswith("error: "), output
    assert "TLS" in lines[0], output
    assert f"DB_SSLMODE={sslmode}" in lines[0], output
    assert "migrated to" not in output
    assert "Traceback" not in output
    assert "postgresql://" not in output
    password = urlsplit(database.primary_url).password
    if password:
        assert password not in output


def test_migrate_without_tls_when_disabled(database: TestDatabase) -> None:
    result = _migrate(DATABASE_URL=database.primary_url, DB_SSLMODE="disable")
    assert result.returncode == 0, result.stderr
    assert "migrated to head" in result.stderr
