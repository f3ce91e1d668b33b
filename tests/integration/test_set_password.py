"""`messenger user set-password`: the migration path for users made before passwords (their
hash is NULL, so they cannot log in until an operator sets one)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

from litestar import Litestar
from litestar.testing import TestClient

from tests.support.cluster import TestDatabase, fetchval


def _set_password(
    database: TestDatabase, username: str, password: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", "user", "set-password", username],
        input=password + "\n",
        capture_output=True,
        text=True,
        env={**os.environ, **database.env()},
        timeout=60,
        check=False,
    )


def test_a_user_without_a_password_gets_one_and_logs_in(
    client: TestClient[Litestar], database: TestDatabase
) -> None:
    username = f"legacy_{uuid.uuid4().hex[:8]}"
    fetchval(
        database.primary_url, "INSERT INTO users (username, display_name) VALUES ($1, $1)", username
    )
    before = client.post("/auth/token", json={"username": username, "password": "a new secret"})
    assert before.status_code == 401, "no password yet: no login"
    result = _set_password(database, username, "a new secret")
    assert result.returncode == 0, result.stderr
    assert "a new secret" not in result.stderr + result.stdout
    after = client.post("/auth/token", json={"username": username, "password": "a new secret"})
    assert after.status_code == 200, after.text


def test_unknown_users_and_short_passwords_are_one_line_errors(database: TestDatabase) -> None:
    unknown = _set_password(database, "nobody_" + uuid.uuid4().hex[:8], "long enough")
    assert unknown.returncode == 2
    assert unknown.stderr.strip().startswith("error: no user named")
    short = _set_password(database, "whoever", "short")
    assert short.returncode == 2
    assert "8 to 128 characters" in short.stderr
    assert len(short.stderr.strip().splitlines()) == 1
