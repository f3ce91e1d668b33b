"""Find the primary of a host list with one short connection per member, as libpq does for
`target_session_attrs=read-write`. For one-off tools (migrations); the serving data layer
probes every member on its own engines instead (`app.db.monitor`)."""

from __future__ import annotations

import asyncio
import ssl

import asyncpg

from app.dsn import parse_host_list

_IN_RECOVERY = "SELECT pg_is_in_recovery()"


class NoPrimaryError(RuntimeError):
    """No member of the host list answered as a primary."""


async def find_primary(
    url: str, timeout_s: float = 5.0, *, ssl_context: ssl.SSLContext | None = None
) -> str:
    """The URL of the member that is the primary (the URL itself when it names one host).

    `ssl_context` is the pools' TLS rule for `DB_SSLMODE` (`app.db.engine._ssl_context`).
    When no member answered at all, the first member's error is raised (a refused TLS
    upgrade, say), not a bare "no primary".
    """
    members = parse_host_list(url).members
    if len(members) == 1:
        return url
    answers = await asyncio.gather(
        *(_is_primary(member.url, timeout_s, ssl_context) for member in members),
        return_exceptions=True,
    )
    if all(isinstance(answer, BaseException) for answer in answers):
        error = answers[0]
        assert isinstance(error, BaseException)
        raise error
    primaries = [member for member, answer in zip(members, answers, strict=True) if answer is True]
    if len(primaries) != 1:
        found = ", ".join(member.name for member in primaries) or "none"
        raise NoPrimaryError(f"expected one primary among the members, found: {found}")
    return primaries[0].url


async def _is_primary(url: str, timeout_s: float, ssl_context: ssl.SSLContext | None) -> bool:
    conn = await asyncpg.connect(url, timeout=timeout_s, ssl=ssl_context)
    try:
        return not await conn.fetchval(_IN_RECOVERY)
    finally:
        await conn.close()
