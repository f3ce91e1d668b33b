"""Event positions: `(xid, kind, id)`, totally ordered, and the `id:` text clients send back.

`xid` is the id of the transaction that wrote the row (`pg_current_xact_id()`, 64 bits), `kind`
orders the rows one transaction wrote (a membership, then a message, then a departure), `id`
is the row's id (the chat id for a membership or a departure). A position with `kind` 0 is a
*floor*: everything below `xid` and nothing at or above it; it is what a stream's first event
carries, so a client that received no event yet still has a place to resume from.
"""

from __future__ import annotations

from typing import NamedTuple

CHAT_JOINED = 1
MESSAGE = 2
CHAT_LEFT = 3
_MAX = 2**63 - 1


class InvalidPositionError(ValueError):
    """A `Last-Event-ID` that is not a position this service wrote."""


class Position(NamedTuple):
    """An event's place in the stream; tuples compare in the stream's order."""

    xid: int
    kind: int
    id: int

    @classmethod
    def floor(cls, xid: int) -> Position:
        """Below every event of `xid` and above every event of a smaller one."""
        return cls(xid, 0, 0)

    def text(self) -> str:
        """The SSE `id:` of the event: `<xid>-<kind>-<id>`."""
        return f"{self.xid}-{self.kind}-{self.id}"

    @classmethod
    def parse(cls, text: str) -> Position:
        """The position a client sent back (`Last-Event-ID`), or `InvalidPositionError`."""
        parts = text.strip().split("-")
        if len(parts) != 3 or not all(part.isascii() and part.isdigit() for part in parts):
            raise InvalidPositionError("expected an event id this stream sent")
        xid, kind, row = (int(part) for part in parts)
        if kind not in (0, CHAT_JOINED, MESSAGE, CHAT_LEFT) or xid > _MAX or row > _MAX:
            raise InvalidPositionError("expected an event id this stream sent")
        if kind == 0 and row != 0:
            raise InvalidPositionError("expected an event id this stream sent")
        return cls(xid, kind, row)
