"""WAL positions and redaction helpers."""

from __future__ import annotations

import pytest

from app.db.lsn import InvalidLsnError, format_lsn, parse_lsn
from app.redact import redact_text, redact_url


@pytest.mark.parametrize("text", ["0/0", "0/16B3748", "16/B374D848", "FFFFFFFF/FFFFFFFF"])
def test_lsn_round_trip(text: str) -> None:
    assert format_lsn(parse_lsn(text)) == text


def test_lsn_order_follows_the_wal() -> None:
    assert parse_lsn("0/FFFFFFFF") < parse_lsn("1/0") < parse_lsn("1/1")


@pytest.mark.parametrize("text", ["", "nope", "1/", "/1", "1/2/3", "G/1", "123456789/1", "0x1/2"])
def test_invalid_lsn(text: str) -> None:
    with pytest.raises(InvalidLsnError):
        parse_lsn(text)


def test_redact_url_hides_only_the_password() -> None:
    assert (
        redact_url("postgresql://app:S3cret@db:5432/messenger?sslmode=require")
        == "postgresql://app:***@db:5432/messenger?sslmode=require"
    )
    assert redact_url("postgresql://db/messenger") == "postgresql://db/messenger"


def test_redact_text_hides_urls_and_password_pairs() -> None:
    text = "failed: postgresql://app:S3cret@db/x and password=Other1 and token S3"
    cleaned = redact_text(text, secrets=("S3",))
    assert "S3cret" not in cleaned
    assert "Other1" not in cleaned
    assert "token ***" in cleaned


def test_redact_url_hides_the_password_of_a_host_list() -> None:
    """The development cluster names itself as a host list with a password."""
    url = "postgresql://postgres:Gen3rated-pw_x@127.0.0.1:5432,127.0.0.1:5433/messenger"
    assert redact_url(url) == "postgresql://postgres:***@127.0.0.1:5432,127.0.0.1:5433/messenger"
    cleaned = redact_text(f"DATABASE_URL={url} failed")
    assert "Gen3rated-pw_x" not in cleaned
    assert "127.0.0.1:5432,127.0.0.1:5433/messenger failed" in cleaned
