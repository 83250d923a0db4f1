"""Per-source limits: who a request counts against, and the two shapes of limit every
front uses (a rate, and a count of things held at once).

A *source* is a client network, not an address: UDP source addresses can be spoofed
and IPv6 hands each subscriber a whole /56 or /64, so a limit keyed on one address is
dodged by changing it. UDP rate limits key on /24 (IPv4) and /56 (IPv6), as DNS
response-rate limiting does; connections and logins, whose peers completed a TCP
handshake, key on the address (/32) and the /64. Networks listed as exempt (loopback
by default) get the empty key None: no limit applies to them.

Memory is bounded: each table tracks at most ``max_tracked`` sources; a new one past
that evicts the longest-tracked (dicts keep insertion order), which is a source that
has not been seen for longest only approximately, but an attacker rotating sources
can only make the table forget, never grow. Clocks come in as arguments.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

IPV4_UDP_PREFIX = 24
IPV6_UDP_PREFIX = 56
IPV4_PEER_PREFIX = 32
IPV6_PEER_PREFIX = 64
DEFAULT_MAX_TRACKED = 100_000

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class SourceKeys:
    """Maps a client address to the key its per-source limits count against."""

    def __init__(
        self,
        exempt: Iterable[str] = (),
        *,
        ipv4_prefix: int = IPV4_UDP_PREFIX,
        ipv6_prefix: int = IPV6_UDP_PREFIX,
    ):
        self.exempt: tuple[Network, ...] = tuple(
            ipaddress.ip_network(n, strict=False) for n in exempt
        )
        self.ipv4_prefix = ipv4_prefix
        self.ipv6_prefix = ipv6_prefix
        # The same few addresses ask again and again: remember their keys (bounded).
        self._memo: dict[str, str | None] = {}

    def key(self, host: str | None) -> str | None:
        """The source key of ``host``; None when no per-source limit applies (exempt
        networks, and peers without an address such as a Unix socket)."""
        if host is None:
            return None
        memo = self._memo
        try:
            return memo[host]
        except KeyError:
            pass
        key = self._compute(host)
        if len(memo) >= 65_536:
            memo.clear()
        memo[host] = key
        return key

    def _compute(self, host: str) -> str | None:
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return host  # not an address (cannot happen on IP sockets): its own source
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address in network for network in self.exempt):
            return None
        prefix = self.ipv4_prefix if address.version == 4 else self.ipv6_prefix
        return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def peer_keys(exempt: Iterable[str] = ()) -> SourceKeys:
    """Keys for peers that completed a handshake (TCP, HTTP, logins): address and /64."""
    return SourceKeys(exempt, ipv4_prefix=IPV4_PEER_PREFIX, ipv6_prefix=IPV6_PEER_PREFIX)


class RateLimiter:
    """A token bucket per source: ``rate_per_s`` sustained, bursts of ``burst``.

    ``allow(key, now)`` takes one token and says whether there was one. A rate of 0
    means no limit. ``now`` is monotonic seconds, passed in.
    """

    def __init__(
        self,
        rate_per_s: float,
        burst: float | None = None,
        *,
        max_tracked: int = DEFAULT_MAX_TRACKED,
    ):
        self.rate_per_s = rate_per_s
        self.burst = burst if burst is not None else max(1.0, rate_per_s)
        self.max_tracked = max_tracked
        self._buckets: dict[str, list[float]] = {}  # key -> [tokens, last refill]

    def allow(self, key: str | None, now: float) -> bool:
        # On the UDP front's hot path for every reply: no min(), few attribute lookups.
        rate = self.rate_per_s
        if key is None or not rate:
            return True
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_tracked:
                del self._buckets[next(iter(self._buckets))]
            self._buckets[key] = [self.burst - 1.0, now]
            return True
        tokens = bucket[0] + (now - bucket[1]) * rate
        if tokens > self.burst:
            tokens = self.burst
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return True
        bucket[0] = tokens
        return False

    def exhausted(self, key: str | None, now: float) -> bool:
        """True when ``allow`` would refuse ``key`` now (nothing is taken)."""
        if key is None or not self.rate_per_s:
            return False
        bucket = self._buckets.get(key)
        if bucket is None:
            return False
        return min(self.burst, bucket[0] + (now - bucket[1]) * self.rate_per_s) < 1.0

    def tracked(self) -> int:
        return len(self._buckets)


class Holdings:
    """How many things (connections, requests in flight, half-received messages) each
    source holds at once, capped at ``per_source``.

    ``take`` says whether the source may hold one more and, if so, counts it; every
    successful ``take`` must be matched by one ``give_back``.
    """

    def __init__(self, per_source: int):
        self.per_source = per_source
        self._held: dict[str, int] = {}

    def take(self, key: str | None) -> bool:
        if key is None:
            return True
        held = self._held.get(key, 0)
        if held >= self.per_source:
            return False
        self._held[key] = held + 1
        return True

    def give_back(self, key: str | None) -> None:
        if key is None:
            return
        held = self._held.get(key, 0) - 1
        if held > 0:
            self._held[key] = held
        else:
            self._held.pop(key, None)

    def held(self, key: str | None) -> int:
        return 0 if key is None else self._held.get(key, 0)

    def sources(self) -> int:
        return len(self._held)
