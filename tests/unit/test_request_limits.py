"""The request limits: parsed like every setting, and handed to granian deliberately."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.cli import _kill_timeout_s, granian_command
from app.config import PROBE_RESERVE, ConfigError, RequestLimits, Settings

ROOT = Path(__file__).resolve().parents[2]


def test_defaults() -> None:
    limits = Settings.from_env({}).requests
    assert limits == RequestLimits(header_timeout_s=10.0, body_timeout_s=5.0)
    assert limits.worker_connections == 1024
    assert limits.request_slots == 1024 - PROBE_RESERVE


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("REQUEST_BODY_TIMEOUT_S", "soon"),
        ("REQUEST_BODY_TIMEOUT_S", "0"),
        ("REQUEST_BODY_TIMEOUT_S", "nan"),
        ("REQUEST_HEADER_TIMEOUT_S", "61"),  # granian takes at most 60 000 ms
        ("WORKER_CONNECTIONS", "16"),  # no slot left beside the probes' reserve
        ("WORKER_CONNECTIONS", "many"),
    ],
)
def test_a_bad_value_names_its_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({name: value})
    assert caught.value.variable == name


def _flag(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


def test_granian_gets_backpressure_and_header_timeout_per_worker() -> None:
    settings = Settings.from_env(
        {"WORKER_CONNECTIONS": "256", "REQUEST_HEADER_TIMEOUT_S": "7", "WORKERS": "2"}
    )
    command = granian_command(settings)
    assert _flag(command, "--backpressure") == "256"  # per worker, whatever WORKERS is
    assert _flag(command, "--http1-header-read-timeout") == "7000"


def test_granian_serves_http1_only_unless_http2_is_enabled() -> None:
    command = granian_command(Settings.from_env({}))
    assert _flag(command, "--http") == "1"  # granian's default, auto, takes cleartext h2
    assert not [flag for flag in command if flag.startswith("--http2-")]


def test_http2_when_enabled_is_bounded_like_http1_headers() -> None:
    settings = Settings.from_env({"HTTP2_ENABLED": "true", "REQUEST_HEADER_TIMEOUT_S": "7"})
    command = granian_command(settings)
    assert _flag(command, "--http") == "auto"
    # a ping after 3.5 s, unanswered for 4 s more: closed within the header timeout (+0.5 s)
    assert _flag(command, "--http2-keep-alive-interval") == "3500"
    assert _flag(command, "--http2-keep-alive-timeout") == "4"
    assert int(_flag(command, "--http2-max-headers-size")) <= 417_792


def test_the_kill_timeout_leaves_room_for_a_slow_body_or_slow_headers() -> None:
    # body 5 + pool wait 2 + statement 5, then shutdown 10, + 1
    assert _kill_timeout_s(Settings.from_env({})) == 23
    slow_headers = Settings.from_env({"REQUEST_HEADER_TIMEOUT_S": "60"})
    assert _kill_timeout_s(slow_headers) == 60 + 10 + 1


def test_serve_refuses_a_bad_limit_in_one_line() -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DB_", "DATABASE_"))}
    result = subprocess.run(
        [sys.executable, "-m", "app", "serve"],
        cwd=ROOT,
        env={**clean, "REQUEST_BODY_TIMEOUT_S": "forever"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: REQUEST_BODY_TIMEOUT_S: expected a number, got 'forever'"
    ]
