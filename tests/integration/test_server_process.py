"""The real entry point: `python -m app serve` runs granian and serves the API."""

from __future__ import annotations

import signal

import httpx
import pytest

from tests.support.cluster import TestDatabase
from tests.support.server import ServerProcess

pytestmark = pytest.mark.slow


def test_serves_and_stops_on_sigterm(database: TestDatabase) -> None:
    with ServerProcess(database) as server:
        response = httpx.post(f"{server.url}/users", json={"username": f"proc_{server.port}"})
        assert response.status_code == 201
        server.signal(signal.SIGTERM)
        assert server.wait(timeout_s=20) == 0
        assert "pools disposed" in server.logs()
