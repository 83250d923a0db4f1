"""Putting forwarding together for a node: the record cache's reader that sends keys of
prefixes served elsewhere upstream, and the ``Forwarding`` the resolver consults."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Awaitable, Callable, Sequence

from node.client.tree import Asker, PrefixLocator, UpstreamUnavailable
from node.client.upstream import Address, Breakers, Upstreams
from node.resolution.forward.forwarder import Forwarder
from node.resolution.outcomes import (
    Found,
    HandleNotFound,
    NotResponsible,
    RecursionTooDeep,
    Unverified,
    UpstreamFailed,
    ValuesNotFound,
)
from node.resolution.prefixes import ServedPrefixes
from node.resolution.resolver import Forwarding, Resolver
from node.runtime.metrics import NodeMetrics
from node.settings import Settings
from protocol.errors import HandleSyntaxError
from protocol.handle import NA_PREFIX, parse_handle
from protocol.keys import PublicKey
from protocol.values import HandleValue
from registry.rows import RawRecord

Read = Callable[[str], Awaitable[RawRecord | None]]


_NA_KEY = NA_PREFIX.upper()  # the prefix of 0.NA records, as a handle key spells it


def foreign_keys(served: ServedPrefixes) -> Callable[[str], bool]:
    """Whether a handle key belongs to a prefix this node does not serve."""

    def foreign(key: str) -> bool:
        # Asked on every miss, of keys nearly always valid and served: their prefix read
        # off the key (a 0.NA record's is its suffix) answers without parsing the handle.
        prefix, _, suffix = key.partition("/")
        if served.serves(suffix if prefix == _NA_KEY else prefix):
            return False
        try:
            return not served.serves(parse_handle(key).owning_prefix)
        except HandleSyntaxError:
            return False

    return foreign


def routed_reader(registry_read: Read, resolver: Resolver) -> Read:
    """The cache's reader: the registry for served prefixes, upstream for the rest."""
    foreign = foreign_keys(resolver.served)

    async def read(key: str) -> RawRecord | None:
        fwd = resolver.forwarding
        if fwd is not None and foreign(key):
            return await fwd.forwarder.fetch(key)
        return await registry_read(key)

    return read


class RecursionPolicy:
    """Which clients may be answered through the tree (``recursion_networks``); the
    verdict per address is remembered (bounded), as the hot paths ask it per hit."""

    MAX_REMEMBERED = 65_536

    def __init__(self, networks: Sequence[str]):
        self.networks = tuple(ipaddress.ip_network(n) for n in networks)
        self._seen: dict[str, bool] = {}

    def allows(self, host: str | None) -> bool:
        if host is None:
            return False
        known = self._seen.get(host)
        if known is not None:
            return known
        try:
            addr = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        verdict = any(addr in n for n in self.networks)
        if len(self._seen) >= self.MAX_REMEMBERED:
            self._seen.clear()
        self._seen[host] = verdict
        return verdict


def build_forwarding(
    settings: Settings,
    resolver: Resolver,
    metrics: NodeMetrics,
    *,
    trust_roots: Sequence[PublicKey],
    monotonic: Callable[[], float] = time.monotonic,
    clock: Callable[[], float] = time.time,
) -> Forwarding:
    s = settings
    upstreams = Upstreams(s.upstream, dns_server=s.upstream_dns_server, monotonic=monotonic)
    breakers = Breakers(s.upstream_breaker_failures, s.upstream_breaker_open_s, monotonic)
    metrics.upstream_breakers_open.set_function(breakers.open_count)
    asker = Asker(
        breakers,
        monotonic=monotonic,
        clock=clock,
        on_forged=lambda what: metrics.forged_replies.labels(what).inc(),
        on_exchange=lambda result, seconds: metrics.upstream_exchanges.labels(result).observe(
            seconds
        ),
    )
    roots: list[Address] = []

    async def refresh_roots() -> None:
        roots[:] = await upstreams.order()

    locator = PrefixLocator(asker, lambda: tuple(roots), s.upstream_max_hops)

    async def values(name: str) -> tuple[HandleValue, ...] | None:
        """A record the forwarder needs (a prefix's sites, a certificate), wherever it
        is; None when it does not exist. Upstream failing is not "does not exist": it
        fails the fetch (served stale, or RC 3), rather than making the record look
        unsigned or absent."""
        found = await resolver.resolve(name, (), (), clock(), public_only=True, forward=True)
        if isinstance(found, UpstreamFailed):
            raise UpstreamUnavailable(found.reason)
        return found.values if isinstance(found, Found) else None

    forwarder = Forwarder(
        asker,
        locator,
        timeout_s=s.upstream_timeout_s,
        sites=values,
        certs=values,
        trust_roots=trust_roots,
        check_signatures=s.forward_signatures != "off",
        monotonic=monotonic,
        clock=clock,
        on_signature=lambda verdict: metrics.forward_signatures.labels(verdict).inc(),
        before_locate=refresh_roots,
    )
    return Forwarding(forwarder, s.forward_signatures, s.upstream_timeout_s, s.recursion_limit)


def count_forwarding(metrics: NodeMetrics, front: str, result: object, attempted: bool) -> None:
    """idnode_forwarded_requests for a resolution that concerned a prefix served
    elsewhere (nothing for this node's own prefixes)."""
    outcome = _forwarding_outcome(result, attempted)
    if outcome is not None:
        metrics.forwarded.labels(front, outcome).inc()


def _forwarding_outcome(result: object, attempted: bool) -> str | None:
    match result:
        case Found(signature=str()):
            return "answered"
        case HandleNotFound(entry=entry) | ValuesNotFound(entry=entry) if (
            entry is not None and entry.foreign
        ):
            return "not_found"
        case UpstreamFailed():
            return "upstream_failed"
        case Unverified():
            return "unverified"
        case RecursionTooDeep():
            return "recursion"
        case NotResponsible() if not attempted:
            return "refused"
    return None
