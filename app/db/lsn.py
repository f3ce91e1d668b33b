"""PostgreSQL WAL positions (LSNs) as integers, and the consistency token that carries one."""

from __future__ import annotations

import re

_LSN = re.compile(r"^([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})$")


class InvalidLsnError(ValueError):
    """A string is not a WAL position of the form `16/B374D848`."""


def parse_lsn(text: str) -> int:
    """`'16/B374D848'` -> its byte position in the WAL."""
    match = _LSN.match(text.strip())
    if match is None:
        raise InvalidLsnError("expected a WAL position like 0/16B3748")
    return (int(match.group(1), 16) << 32) | int(match.group(2), 16)


def format_lsn(position: int) -> str:
    """A byte position in the WAL -> PostgreSQL's `hi/lo` text."""
    return f"{position >> 32:X}/{position & 0xFFFFFFFF:X}"
