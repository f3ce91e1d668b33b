"""`python -m app`: bad settings stop it with one line naming the variable, no traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from app.cli import port_in_use
from tests.support.server import free_port

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DB_", "DATABASE_"))}
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"DB_POOL_MAX": "lots"}, "DB_POOL_MAX"),
        ({"APP_ENV": "production"}, "DATABASE_URL"),
        ({"DATABASE_URL": "postgresql://u:Pw-9x8y@h:bad/db"}, "DATABASE_URL"),
    ],
)
def test_bad_setting_is_one_line_and_exit_2(env: dict[str, str], variable: str) -> None:
    result = _run("serve", **env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {variable}: ")
    assert "Traceback" not in result.stderr
    assert "Pw-9x8y" not in result.stderr + result.stdout


def test_unreachable_database_fails_migrate_in_one_line_without_password() -> None:
    result = _run("migrate", DATABASE_URL="postgresql://u:Pw-9x8y@127.0.0.1:1/db")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Pw-9x8y" not in result.stderr + result.stdout


def test_serve_refuses_a_port_already_served_in_one_line() -> None:
    # A listener as granian makes it (SO_REUSEPORT), which a second granian would share.
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        result = _run("serve", HOST="127.0.0.1", PORT=str(port))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"error: 127.0.0.1:{port} is already in use (another `messenger serve`?):"
        " stop it, or set PORT"
    ], result.stderr


def test_a_free_port_is_not_in_use_even_with_connections_of_a_closed_server_lingering() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert port_in_use("127.0.0.1", port) is not None
    assert port_in_use("127.0.0.1", port) is None


def test_an_unreachable_database_is_one_line_before_granian_starts() -> None:
    port = str(free_port())
    result = _run(
        "serve",
        DATABASE_URL="postgresql://u:Pw-9x8y@127.0.0.1:1,[::1]:2/db",
        PORT=port,
        WORKERS="3",
    )
    assert result.returncode == 2
    assert result.stdout == ""  # granian never started: none of its exit lines
    assert result.stderr.splitlines() == [
        "error: the database is unreachable (127.0.0.1:1: ConnectionRefusedError;"
        " [::1]:2: ConnectionRefusedError): check DATABASE_URL and DB_SSLMODE,"
        " or set DB_WAIT_FOR_PRIMARY_S to wait for it"
    ]


def test_production_names_every_missing_variable_in_one_line() -> None:
    result = _run("serve", APP_ENV="production", PORT=str(free_port()))
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    for variable in ("DATABASE_URL", "AUTH_JWT_KEYS", "METRICS_TOKEN"):
        assert variable in line


def test_the_installed_command_works_outside_uv_run_and_serve_help_lists_the_settings() -> None:
    """`.venv/bin/messenger` (the console script `uv sync` installs), with no `uv run`."""
    command = Path(sys.executable).with_name("messenger")
    clean = {key: value for key, value in os.environ.items() if not key.startswith("UV")}
    clean.pop("VIRTUAL_ENV", None)
    top = subprocess.run(
        [command, "--help"], capture_output=True, text=True, timeout=60, check=True, env=clean
    )
    assert "serve" in top.stdout
    serve = subprocess.run(
        [command, "serve", "--help"], capture_output=True, text=True, timeout=60, check=True
    )
    for variable in (
        "DATABASE_URL",
        "DB_POOL_MAX",
        "HOST",
        "PORT",
        "WORKERS",
        "HTTP2_ENABLED",
        "REQUEST_HEADER_TIMEOUT_S",
        "WORKER_CONNECTIONS",
        "AUTH_JWT_KEYS",
        "METRICS_TOKEN",
        "OPENAPI_ENABLED",
        "APP_ENV",
        "REDIS_URL",
        "OTEL_TRACES_EXPORTER",
    ):
        assert f"\n  {variable}" in serve.stdout, variable
    assert "Address to listen on." in serve.stdout  # the field's docstring


def test_litestars_own_command_line_finds_the_app_without_a_database() -> None:
    litestar = Path(sys.executable).with_name("litestar")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DB_", "DATABASE_", "AUTH_"))}
    routes = subprocess.run(
        [litestar, "routes"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=clean,
        check=False,
    )
    assert routes.returncode == 0, routes.stderr
    assert "/chats/{chat_id" in routes.stdout
    assert "list_messages" in routes.stdout or "messages" in routes.stdout
    schema = subprocess.run(
        [
            litestar,
            "--app",
            "app.tooling:create_app",
            "schema",
            "openapi",
            "--output",
            "/dev/stdout",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=clean,
        check=False,
    )
    assert schema.returncode == 0, schema.stderr
    assert '"X-Consistency-Token"' in schema.stdout


def test_db_destroy_asks_for_yes_then_deletes_the_cluster(tmp_path: Path) -> None:
    cluster = tmp_path / "pg"
    (cluster / "primary").mkdir(parents=True)
    (cluster / "primary" / "postgresql.conf").write_text("# a stand-in\n")
    (tmp_path / "postgres.env").write_text("DATABASE_URL=...\n")
    refused = _run("db", "destroy", APP_DATA_DIR=str(tmp_path))
    assert refused.returncode == 2
    assert "confirm with --yes" in refused.stderr
    assert cluster.exists()
    done = _run("db", "destroy", "--yes", APP_DATA_DIR=str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert not cluster.exists()
    assert not (tmp_path / "postgres.env").exists()
    again = _run("db", "destroy", "--yes", APP_DATA_DIR=str(tmp_path))
    assert again.returncode == 0
    assert "nothing to destroy" in again.stderr
