"""Where the top-level node is, and which of its servers to ask now.

``upstream`` names the top-level's native addresses (tried in order), or ``srv:<domain>``:
then they come from DNS SRV records ``_handle._tcp.<domain>`` (and ``_handle._udp``), in
priority order with weighted shuffling inside a priority (RFC 2782), refreshed when
their TTL runs out. Every server has a circuit breaker: after
``upstream_breaker_failures`` failures in a row it is skipped for
``upstream_breaker_open_s``, then one request may try it again (half open). A request
that finds every breaker open fails at once instead of waiting out timeouts.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.rdtypes.IN.SRV
import dns.resolver

log = logging.getLogger("idnode.upstream")

SRV_SERVICES = ("_handle._tcp", "_handle._udp")
SRV_MIN_TTL_S = 30.0  # a zero TTL must not make every request a DNS query


@dataclass(frozen=True, slots=True)
class Address:
    host: str
    port: int
    udp: bool = True  # UDP first (then TCP); False: the server offers TCP only

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> Address:
        host, _, port = text.rpartition(":")
        return cls(host.strip("[]"), int(port))


class Breaker:
    """Closed (ask), open (skip until ``open_until``), half open (one try)."""

    __slots__ = ("failures", "open_s", "open_until", "threshold", "trying")

    def __init__(self, threshold: int, open_s: float):
        self.threshold = threshold
        self.open_s = open_s
        self.failures = 0
        self.open_until = 0.0
        self.trying = False

    def allows(self, now: float) -> bool:
        if self.failures < self.threshold:
            return True
        if now < self.open_until or self.trying:
            return False
        self.trying = True  # half open: this caller is the probe
        return True

    def succeeded(self) -> None:
        self.failures, self.trying = 0, False

    def failed(self, now: float) -> None:
        self.failures += 1
        self.trying = False
        if self.failures >= self.threshold:
            self.open_until = now + self.open_s

    @property
    def is_open(self) -> bool:
        return self.failures >= self.threshold


class Breakers:
    """One breaker per server address, created on first use (bounded: the servers a
    deployment talks to are few, but referrals name servers we do not choose)."""

    MAX = 4096

    def __init__(self, threshold: int, open_s: float, monotonic: Callable[[], float]):
        self.threshold, self.open_s, self.monotonic = threshold, open_s, monotonic
        self._by_address: dict[Address, Breaker] = {}

    def of(self, address: Address) -> Breaker:
        breaker = self._by_address.get(address)
        if breaker is None:
            if len(self._by_address) >= self.MAX:
                closed = [a for a, b in self._by_address.items() if not b.is_open]
                for a in closed[: len(closed) // 2 or 1]:
                    del self._by_address[a]
            breaker = self._by_address[address] = Breaker(self.threshold, self.open_s)
        return breaker

    def allows(self, address: Address) -> bool:
        return self.of(address).allows(self.monotonic())

    def succeeded(self, address: Address) -> None:
        self.of(address).succeeded()

    def failed(self, address: Address) -> None:
        self.of(address).failed(self.monotonic())

    def open_count(self) -> int:
        return sum(1 for b in self._by_address.values() if b.is_open)


class Upstreams:
    """The top-level's addresses, configured or discovered; ``order()`` is the failover
    order for one request."""

    def __init__(
        self,
        configured: Sequence[str],
        *,
        dns_server: str | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ):
        self.srv_domain: str | None = None
        self.static: tuple[Address, ...] = ()
        if len(configured) == 1 and configured[0].startswith("srv:"):
            self.srv_domain = configured[0][4:]
        else:
            self.static = tuple(Address.parse(a) for a in configured)
        self.dns_server = Address.parse(dns_server) if dns_server else None
        self.monotonic = monotonic
        self.rng = rng or random.Random()
        self._found: tuple[Address, ...] = ()
        self._found_until = 0.0

    @property
    def configured(self) -> bool:
        return bool(self.static) or self.srv_domain is not None

    async def order(self) -> tuple[Address, ...]:
        if self.srv_domain is None:
            return self.static
        if self.monotonic() >= self._found_until:
            await self._discover()
        return self._found

    async def _discover(self) -> None:
        assert self.srv_domain is not None
        resolver = dns.asyncresolver.Resolver(configure=self.dns_server is None)
        if self.dns_server is not None:
            resolver.nameservers = [self.dns_server.host]
            resolver.port = self.dns_server.port
        resolver.lifetime = 2.0
        found: list[Address] = []
        ttl = 3600.0
        for service in SRV_SERVICES:
            try:
                answer = await resolver.resolve(f"{service}.{self.srv_domain}", "SRV")
            except (dns.exception.DNSException, OSError) as exc:
                log.warning("no SRV records %s.%s: %s", service, self.srv_domain, exc)
                continue
            ttl = min(ttl, float(answer.rrset.ttl) if answer.rrset is not None else ttl)
            records = [r for r in answer if isinstance(r, dns.rdtypes.IN.SRV.SRV)]
            for record in _rfc2782_order(records, self.rng):
                address = Address(record.target.to_text(omit_final_dot=True), record.port)
                if address not in found:
                    found.append(address)
        if found:
            self._found = tuple(found)
        # Keep what was known when DNS fails: the top-level did not move because DNS did.
        self._found_until = self.monotonic() + max(ttl, SRV_MIN_TTL_S)


def _rfc2782_order(
    records: Sequence[dns.rdtypes.IN.SRV.SRV], rng: random.Random
) -> list[dns.rdtypes.IN.SRV.SRV]:
    """Lowest priority first; within a priority, a weighted random order."""
    out: list[dns.rdtypes.IN.SRV.SRV] = []
    for priority in sorted({r.priority for r in records}):
        group = [r for r in records if r.priority == priority]
        while group:
            total = sum(r.weight for r in group)
            pick = rng.uniform(0, total) if total else 0
            running = 0
            for i, r in enumerate(group):
                running += r.weight
                if running >= pick:
                    out.append(group.pop(i))
                    break
    return out
