"""Fetching a record this node does not hold from the server that does: the record
cache's reader for foreign keys (node.resolution.cache.records), so caching per TTL,
negative answers, single flight and serve-stale come from the cache.

- ``0.NA/<prefix>``: the values naming the prefix's servers, found through the tree
  (``tree.PrefixLocator``), kept like any record.
- any other handle: its prefix's sites (the key above, through the cache), the server
  the site's hash rule picks (failover to the others), asked for the whole record with
  PUBL (a forwarded answer is anyone's answer: public values only).

Each fetch has one deadline (``upstream_timeout_s``) across every hop. Signatures are
checked here, once per fetch, against the node's trust roots; the verdict travels with
the record (``ForeignRecord.signature``) and the resolver applies the policy.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from node.client.tree import (
    NA_PREFIX,
    Asker,
    PrefixLocator,
    UpstreamUnavailable,
    addresses_of,
    sites_of,
)
from node.signing.trust import collect_certs
from protocol.codes import ResponseCode
from protocol.errors import HandleSyntaxError
from protocol.handle import parse_handle
from protocol.keys import PublicKey
from protocol.recordsig import is_signature, verify_record
from protocol.valuecodec import encode_values
from protocol.values import HandleValue
from registry.rows import RawRecord

log = logging.getLogger("idnode.forward")

VALID, INVALID, UNSIGNED, UNCHECKED = "valid", "invalid", "unsigned", "unchecked"

Lookup = Callable[[str], Awaitable[tuple[HandleValue, ...] | None]]


@dataclass(frozen=True, slots=True)
class ForeignRecord(RawRecord):
    """A record fetched from upstream, with how its signature checked."""

    signature: str = UNCHECKED
    detail: str = ""  # why it did not verify


class Forwarder:
    def __init__(
        self,
        asker: Asker,
        locator: PrefixLocator,
        *,
        timeout_s: float,
        sites: Lookup,
        certs: Lookup,
        trust_roots: Sequence[PublicKey] = (),
        check_signatures: bool = True,
        monotonic: Callable[[], float] = time.monotonic,
        clock: Callable[[], float] = time.time,
        on_signature: Callable[[str], None] = lambda verdict: None,
        before_locate: Callable[[], Awaitable[None]] | None = None,
    ):
        self.asker = asker
        self.locator = locator
        self.timeout_s = timeout_s
        # How this node finds a prefix's sites and a certificate's record: through its
        # own resolver (and so the cache), whichever node holds them.
        self.sites = sites
        self.certs = certs
        self.trust_roots = tuple(trust_roots)
        self.check_signatures = check_signatures
        self.monotonic = monotonic
        self.clock = clock
        self.on_signature = on_signature
        self.before_locate = before_locate  # refreshes the top-level's addresses (DNS SRV)

    async def fetch(self, key: str) -> RawRecord | None:
        """The record ``key`` (normalised) as its home server has it; None when it does
        not exist. UpstreamUnavailable when nobody could say."""
        deadline = self.monotonic() + self.timeout_s
        try:
            handle = parse_handle(key)
        except HandleSyntaxError:
            return None
        if handle.is_prefix_record:
            if self.before_locate is not None:
                await self.before_locate()
            located = await self.locator.locate(handle.owning_prefix, deadline)
            if located is None:
                return None
            return RawRecord(key, encode_values(located), 0)
        site_values = await self.sites(f"{NA_PREFIX}/{handle.owning_prefix}")
        if not site_values:
            return None  # no such prefix in the tree: no such handle
        servers = addresses_of(sites_of(site_values), key)
        if not servers:
            raise UpstreamUnavailable(f"the sites of {handle.owning_prefix} name no server")
        answer = await self.asker.ask(servers, key, (), deadline)
        if answer.response_code != ResponseCode.SUCCESS:
            if answer.response_code in (
                ResponseCode.HANDLE_NOT_FOUND,
                ResponseCode.VALUES_NOT_FOUND,
            ):
                return None
            raise UpstreamUnavailable(
                f"{answer.server} answered RC {answer.response_code} for {key}"
            )
        verdict, detail = await self._verify(answer.handle, answer.values)
        self.on_signature(verdict)
        if verdict == INVALID:
            log.warning("record %s from %s does not verify: %s", key, answer.server, detail)
        return ForeignRecord(answer.handle, encode_values(answer.values), 0, verdict, detail)

    async def _verify(self, handle: str, values: tuple[HandleValue, ...]) -> tuple[str, str]:
        if not self.check_signatures:
            return UNCHECKED, ""
        if not any(is_signature(v) for v in values):
            return UNSIGNED, ""
        if not self.trust_roots:
            return UNCHECKED, "no trust root configured"
        certs = await collect_certs(values, self.certs)
        report = verify_record(
            handle, values, certs=certs, roots=self.trust_roots, now=int(self.clock())
        )
        if report.ok:
            return VALID, f"signed by {report.signer}"
        return INVALID, "; ".join(sorted(str(r) for r in report.reasons())) or "not verified"


__all__ = ["ForeignRecord", "Forwarder", "UpstreamUnavailable"]
