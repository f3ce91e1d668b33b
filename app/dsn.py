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

import re
from dataclasses import dataclass, field
from urllib.parse import quote, unquote

DEFAULT_PORT = 5432
# Options that choose among hosts: consumed here, never passed on to a member's URL.
_HOST_OPTIONS = frozenset({"host", "hostaddr", "port", "target_session_attrs"})
_ESCAPES = re.compile(r"(?:[^%]|%[0-9A-Fa-f]{2})*")
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
    user: str | None = None
    """The user name, percent-decoded (None when the URL names none)."""
    password: str | None = field(default=None, repr=False)
    """The password, percent-decoded (None when the URL has none)."""


def parse_host_list(url: str) -> HostList:
    """Split `url` into its members; one member for an ordinary single-host URL."""
    parts = _split_uri(url)
    query = _parse_query(parts.query)
    hosts = _split_netloc_hosts(parts.hostspec)
    hosts += [
        _host_port(item) for key, value in query if key == "host" for item in _split_query(value)
    ]
    ports = [item for key, value in query if key == "port" for item in _split_query(value)]
    endpoints = _endpoints(hosts, ports)
    attrs = _target_session_attrs(query)
    kept = _encode_query([(key, value) for key, value in query if key not in _HOST_OPTIONS])
    prefix = f"{parts.userinfo}@" if parts.userinfo is not None else ""
    suffix = f"?{kept}" if kept else ""
    members = tuple(
        Member(
            host, port, f"{parts.scheme}://{prefix}{_netloc_host(host)}:{port}{parts.path}{suffix}"
        )
        for host, port in endpoints
    )
    user, password = _credentials(parts.userinfo)
    return HostList(members, attrs, user, password)


@dataclass(frozen=True, slots=True)
class _UriParts:
    scheme: str
    userinfo: str | None
    hostspec: str
    path: str
    query: str


def _split_uri(url: str) -> _UriParts:
    """libpq's URI grammar, `scheme://[userspec@][hostspec][/dbname][?paramspec]`.

    Unlike `urllib.parse.urlsplit`, nothing here reads the host list as one RFC 3986
    authority: `h1:5432,[::1]:5433` is a list whose members are split on commas, and an IPv6
    member in brackets may stand anywhere in it (some distributions' `urlsplit`, Debian's
    3.11 among them, refuse a bracket that is not first). The authority ends at the first `/`
    or `?`; the userspec at its last `@` (libpq requires a literal `@`, `/` or `?` in a user
    name or password to be percent-encoded; a literal `@` is tolerated here). `#` has no
    meaning to libpq and none here.
    """
    scheme, separator, rest = url.partition("://")
    if not separator or not scheme or not scheme.replace("+", "").replace("-", "").isalnum():
        raise HostListError("is not a valid URL")
    if any(character.isspace() for character in url):
        raise HostListError("is not a valid URL (it contains white space)")
    end = len(rest)
    for delimiter in "/?":
        index = rest.find(delimiter)
        if index != -1:
            end = min(end, index)
    authority, tail = rest[:end], rest[end:]
    userinfo, at, hostspec = authority.rpartition("@")
    path, question, query = tail.partition("?")
    return _UriParts(scheme, userinfo if at else None, hostspec, path, query if question else "")


def _parse_query(query: str) -> list[tuple[str, str]]:
    """`key=value&...`, percent-decoded as libpq does (`+` stays a plus sign)."""
    pairs: list[tuple[str, str]] = []
    for item in query.split("&"):
        if not item:
            continue
        key, equals, value = item.partition("=")
        if not equals or not key:
            raise HostListError("has a query parameter that is not key=value")
        pairs.append((_decode(key), _decode(value)))
    return pairs


def _encode_query(pairs: list[tuple[str, str]]) -> str:
    return "&".join(f"{quote(key, safe='')}={quote(value, safe='/:,')}" for key, value in pairs)


def _credentials(userinfo: str | None) -> tuple[str | None, str | None]:
    if userinfo is None:
        return None, None
    user, colon, password = userinfo.partition(":")
    return (_decode(user) or None), (_decode(password) if colon else None)


def _decode(text: str) -> str:
    """Percent-decoding that refuses a malformed escape, as libpq does."""
    if "%" in text and not _ESCAPES.fullmatch(text):
        raise HostListError("has a malformed percent-escape")
    try:
        return unquote(text, errors="strict")
    except UnicodeDecodeError:
        raise HostListError("has a percent-escape that is not UTF-8") from None


def _split_netloc_hosts(hostlist: str) -> list[tuple[str, int | None]]:
    if not hostlist:
        return []
    return [
        _host_port(item, in_netloc=True)
        for item in hostlist.split(",")
        if item or _fail("an empty host")
    ]


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


def _host_port(item: str, *, in_netloc: bool = False) -> tuple[str, int | None]:
    """`h`, `h:5432`, `[::1]`, `[::1]:5432`, or a bare query-form host (`::1` too).

    A netloc member is percent-decoded here, after the list was split on commas (a query
    value was decoded whole); an IPv6 address there needs its brackets, as in libpq.
    """
    item = item.strip()
    if not item:
        _fail("an empty host")
    if item.startswith("["):
        host, bracket, rest = item[1:].partition("]")
        if not bracket or not host or (rest and not rest.startswith(":")):
            _fail("a malformed IPv6 host")
        return host, _port(rest[1:]) if rest else None
    if item.count(":") == 1:
        host, _, port = item.partition(":")
        if not host:
            _fail("an empty host")
        return (_decode(host) if in_netloc else host), _port(port)
    if in_netloc and ":" in item:
        _fail("an IPv6 host without brackets")
    return (_decode(item) if in_netloc else item), None


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
    """The host as a URL writes it: an IPv6 address in brackets, a socket directory
    percent-encoded."""
    return f"[{host}]" if ":" in host else quote(host, safe="")


def _fail(what: str) -> bool:
    raise HostListError(f"has {what}")
