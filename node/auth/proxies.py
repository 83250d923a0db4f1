"""The real client of an HTTP request that came through trusted proxies.

Behind a TLS proxy on the same host every request comes from 127.0.0.1: a limit keyed
on the peer would make one guesser lock every admin out. A proxy appends the address it
received the request from to ``X-Forwarded-For``, so reading that header from the right
and skipping our own proxies (``http_trusted_proxies``) finds the first address no proxy
of ours vouches for: the client. Entries left of it are whatever the client sent, and
are never believed. The header of a peer that is not a trusted proxy is ignored.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence

FORWARDED_FOR = "X-Forwarded-For"
# Hops looked at, from the right: a real chain of proxies is a handful long.
MAX_HOPS = 32

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _address(text: str) -> Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def forwarded_for(headers: Mapping[str, str]) -> list[str]:
    """Every ``X-Forwarded-For`` value of a request, in order (a multidict may hold
    several headers: their lists join)."""
    getall = getattr(headers, "getall", None)
    if getall is not None:
        values: Sequence[str] = getall(FORWARDED_FOR, ())
    else:
        one = headers.get(FORWARDED_FOR)
        values = [one] if one else []
    return [part for value in values for part in value.split(",")]


class TrustedProxies:
    def __init__(self, networks: Iterable[str]):
        self.networks: tuple[Network, ...] = tuple(
            ipaddress.ip_network(n, strict=False) for n in networks
        )

    def trusted(self, address: Address) -> bool:
        return any(address in network for network in self.networks)

    def client(self, peer: str | None, headers: Mapping[str, str]) -> str | None:
        """The client's address as text (the peer's when no trusted proxy vouches for
        another); None for a peer without an address."""
        if peer is None:
            return None
        address = _address(peer)
        if address is None or not self.trusted(address):
            return peer
        hops = forwarded_for(headers)
        for hop in reversed(hops[-MAX_HOPS:]):
            found = _address(hop)
            if found is None:
                break  # garbage where a proxy's entry should be: believe no further
            if not self.trusted(found):
                return str(found)
            address = found
        return str(address)  # every hop is ours: the leftmost one we read
