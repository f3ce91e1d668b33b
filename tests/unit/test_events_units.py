"""Event ids and the events settings."""

from __future__ import annotations

import pytest

from app.config import ConfigError, Settings
from app.events.hub import _listen_url
from app.events.position import InvalidPositionError, Position


def test_an_event_id_round_trips_and_orders_as_the_stream() -> None:
    position = Position(7421, 2, 5512)
    assert position.text() == "7421-2-5512"
    assert Position.parse("7421-2-5512") == position
    assert Position.floor(7421) < Position(7421, 1, 1) < position < Position(7422, 1, 1)
    assert Position.parse("7421-3-9") == Position(7421, 3, 9)  # a departure (chat_left)


@pytest.mark.parametrize(
    "text", ["", "1-2", "a-b-c", "1-4-1", "1-0-5", "-1-2-3", f"{2**63}-2-1", "1-2-3-4", "１-2-3"]
)
def test_a_malformed_event_id_is_refused(text: str) -> None:
    with pytest.raises(InvalidPositionError):
        Position.parse(text)


def test_events_settings_have_defaults_and_are_validated() -> None:
    events = Settings.from_env({}).events
    assert events.enabled
    assert events.heartbeat_s == 15.0
    assert events.retry_s == 2.0
    assert events.buffer == 256
    configured = Settings.from_env(
        {"EVENTS_HEARTBEAT_S": "0.5", "EVENTS_RETRY_MS": "750", "EVENTS_BUFFER": "8"}
    ).events
    assert (configured.heartbeat_s, configured.retry_s, configured.buffer) == (0.5, 0.75, 8)
    with pytest.raises(ConfigError, match="EVENTS_BUFFER"):
        Settings.from_env({"EVENTS_BUFFER": "0"})


def test_the_listener_never_goes_through_pgbouncer() -> None:
    direct = "postgresql://u:p@db:5432/m"
    bouncer = "postgresql://u:p@bouncer:6432/m"
    assert _listen_url(Settings.from_env({"DATABASE_URL": direct})) == direct
    pooled = {"DATABASE_URL": bouncer, "DB_PGBOUNCER": "true"}
    assert _listen_url(Settings.from_env(pooled)) is None  # polls instead
    pooled["EVENTS_LISTEN_URL"] = direct
    assert _listen_url(Settings.from_env(pooled)) == direct
