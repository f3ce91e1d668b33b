"""Calling the application at the ASGI level, below what the test client shows (a `HEAD`
body being sent, a body that stalls): the scope of a plain HTTP/1.1 request."""

from __future__ import annotations

from typing import Any


def http_scope(
    method: str, path: str, *, query: str = "", headers: list[tuple[bytes, bytes]] | None = None
) -> dict[str, Any]:
    """An ASGI `http` scope for `method path?query`, with a `host` header and `headers`."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query.encode(),
        "headers": [(b"host", b"testserver"), *(headers or [])],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "state": {},
    }
