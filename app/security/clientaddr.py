"""The client's address: the TCP peer, or what a trusted proxy says it is.

`X-Forwarded-For` is believed only from a peer inside `TRUSTED_PROXIES`; then the address is
the right-most entry that is not itself a trusted proxy (each proxy appends the address it
saw, so entries left of it are whatever the client chose to send). Without `TRUSTED_PROXIES`
the header is ignored and the peer is the client. Only the rate-limited routes (login,
registration) ask: nothing per other request.
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Network, IPv6Network, ip_address

Networks = tuple[IPv4Network | IPv6Network, ...]


def _trusted(address: str, proxies: Networks) -> bool:
    try:
        parsed = ip_address(address)
    except ValueError:
        return False
    return any(parsed in network for network in proxies)


def client_address(peer: str | None, forwarded_for: Iterable[str], proxies: Networks) -> str:
    """The address to limit by, from the TCP `peer` and the `X-Forwarded-For` header lines."""
    address = peer or "unknown"
    if not proxies or not _trusted(address, proxies):
        return address
    hops = [hop.strip() for line in forwarded_for for hop in line.split(",")]
    for hop in reversed(hops):
        if not hop:
            continue
        try:
            ip_address(hop)
        except ValueError:
            return address  # a garbled header: limit the proxy's own address
        if not _trusted(hop, proxies):
            return hop
    return address
