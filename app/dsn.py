"""libpq connection URLs that name a cluster by a host list, split into one URL per member.

libpq (and so psql, JDBC, Npgsql, asyncpg) accepts several hosts in one URL:

    postgresql://user:pw@h1:5432,h2:5433,h3/db?target_session_attrs=read-write
    postgresql://user:pw@/db?host=h1,h2&port=5432,5433
    postgresql://user:pw@/db?host=h1:5432&host=h2:5433

The service probes every member itself, so it needs each member as a URL of its own, with
the same user, password, database and options. Nothing here echoes a URL: errors say what is
wrong, never the value (it may hold a password).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

DEFAULT_PORT = 5432
# Options that choose among hosts: consumed here, never passed on to a member's URL.
_HOST_OPTIONS = frozenset({"host", "hostaddr", "port", "target_session_attrs"})
TARGET_SESSION_ATTRS = ("any", "read-write", "primary", "read-only", "standby", "prefer-standby")


class HostListError(ValueError):
    """The URL's host list cannot be read; the message never contains the URL."""


@dataclass(frozen=True, slots=True)
class Member:
    """One server named by the host list."""

    host: str
    """Host name or address (IPv6 without brackets)."""
    port: int
    """TCP port."""
    url: str
    """A URL naming this server alone, with the list's credentials and options."""

    @property
    def name(self) -> str:
        """`host:port`: how logs, metrics and readiness name the member (no credentials)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class HostList:
    """The members of a URL and the libpq options that choose among them."""

    members: tuple[Member, ...]
    """In the order the URL names them."""
    target_session_attrs: str
    """libpq's `target_session_attrs` (`any` when absent)."""


def parse_host_list(url: str) -> HostList:
    """Split `url` into its members; one member for an ordinary single-host URL."""
    try:
        parts = urlsplit(url)
    except ValueError:
        raise HostListError("is not a valid URL") from None
    userinfo, at, hostlist = parts.netloc.rpartition("@")
    query = parse_qsl(parts.query, keep_blank_values=True)
    hosts = _split_netloc_hosts(hostlist)
    hosts += [
        _host_port(item) for key, value in query if key == "host" for item in _split_query(value)
    ]
    ports = [item for key, value in query if key == "port" for item in _split_query(value)]
    endpoints = _endpoints(hosts, ports)
    attrs = _target_session_attrs(query)
    kept = urlencode([(key, value) for key, value in query if key not in _HOST_OPTIONS])
    prefix = f"{userinfo}{at}" if at else ""
    members = tuple(
        Member(
            host,
            port,
            urlunsplit(
                (parts.scheme, f"{prefix}{_netloc_host(host)}:{port}", parts.path, kept, "")
            ),
        )
        for host, port in endpoints
    )
    return HostList(members, attrs)


def _split_netloc_hosts(hostlist: str) -> list[tuple[str, int | None]]:
    if not hostlist:
        return []
    return [_host_port(item) for item in hostlist.split(",") if item or _fail("an empty host")]


def _split_query(value: str) -> list[str]:
    return [item.strip() for item in value.split(",")]


def _endpoints(hosts: list[tuple[str, int | None]], ports: list[str]) -> list[tuple[str, int]]:
    """Pair hosts with ports as libpq does: one port for all, or one per host."""
    if not hosts:
        raise HostListError("has no host")
    parsed_ports = [_port(item) for item in ports]
    if parsed_ports and len(parsed_ports) not in (1, len(hosts)):
        raise HostListError("must give one port, or one port per host")
    endpoints: list[tuple[str, int]] = []
    for index, (host, own_port) in enumerate(hosts):
        listed = parsed_ports[0] if len(parsed_ports) == 1 else None
        if len(parsed_ports) > 1:
            listed = parsed_ports[index]
        endpoints.append((host, own_port or listed or DEFAULT_PORT))
    if len(set(endpoints)) != len(endpoints):
        raise HostListError("names the same host and port twice")
    return endpoints


def _host_port(item: str) -> tuple[str, int | None]:
    """`h`, `h:5432`, `[::1]`, `[::1]:5432`, or a bare query-form host."""
    item = item.strip()
    if not item:
        _fail("an empty host")
    if item.startswith("["):
        host, bracket, rest = item[1:].partition("]")
        if not bracket or not host:
            _fail("a malformed IPv6 host")
        return host, _port(rest[1:]) if rest.startswith(":") else None
    if item.count(":") == 1:
        host, _, port = item.partition(":")
        if not host:
            _fail("an empty host")
        return host, _port(port)
    return item, None


def _port(text: str) -> int:
    if not text.isascii() or not text.isdigit() or not 0 < int(text) < 65536:
        raise HostListError("has a port that is not a number from 1 to 65535")
    return int(text)


def _target_session_attrs(query: list[tuple[str, str]]) -> str:
    values = [value for key, value in query if key == "target_session_attrs"]
    if not values:
        return "any"
    if len(values) > 1 or values[0] not in TARGET_SESSION_ATTRS:
        raise HostListError(
            f"target_session_attrs must be one of {', '.join(TARGET_SESSION_ATTRS)}"
        )
    return values[0]


def _netloc_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _fail(what: str) -> bool:
    raise HostListError(f"has {what}")
