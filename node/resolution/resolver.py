"""The resolution core: the single entry every front (native, HTTP, DNS) calls.

``resolve`` returns a typed outcome (``node.resolution.outcomes``) rather than raising;
each outcome carries its response code and message, which the fronts put in their own
wire form (native replies, HTTP statuses, the record page). The one exception is a
registry that cannot answer: ``DatabaseUnavailable``, which every front words as RC 3
(retry later).

No caller waits on the registry longer than the client timeout (``client_timeout_s``,
RFC 8767's "stale answer client timeout"), whatever the registry does, hung or gone: a
read not answered by then goes on in the background (the cache keeps its result), and
the caller gets a stale copy (``node.resolution.cache.records``) or RC 3.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal, overload

from node.client.tree import UpstreamUnavailable, addresses_of, sites_of
from node.resolution.cache.records import Entry, Lookup, NoAnswer, RecordCache
from node.resolution.forward.forwarder import UNCHECKED, VALID, Forwarder
from node.resolution.outcomes import (
    Found,
    HandleNotFound,
    InvalidHandle,
    NotResponsible,
    PrefixReferral,
    RecursionTooDeep,
    ResolveResult,
    Unverified,
    UpstreamFailed,
    ValuesNotFound,
)
from node.resolution.prefixes import ServedPrefixes
from node.secrets.vault import SECKEY_TYPE, SHOWN, is_seckey, shown
from protocol.codes import ResponseCode
from protocol.errors import HandleSyntaxError
from protocol.handle import NA_PREFIX, Handle, normalise, parse_handle, prefix_ancestors
from protocol.values import HandleValue, select_values
from protocol.wirescan import Selected, scan, select
from registry.errors import DatabaseUnavailable
from registry.rows import RawRecord
from registry.store import Registry

if TYPE_CHECKING:
    from node.resolution.site import Site


@dataclass(frozen=True, slots=True)
class Forwarding:
    """How this node resolves what it does not serve (node.resolution.forward)."""

    forwarder: Forwarder
    policy: str  # forward_signatures: require, report, off
    timeout_s: float
    recursion_limit: int


@dataclass(frozen=True, slots=True)
class WireFound:
    """``Found`` for a front that sends values as stored (``resolve(..., wire=True)``):
    the record's values selected, filtered and redacted on the wire (protocol.wirescan),
    never decoded. Only for this node's own records."""

    handle: str  # as the client asked for it
    selected: Selected  # u32 count + the values to send; .private: some lack public read
    entry: Entry | None = None  # as Found.entry
    stale: bool = False
    response_code: ClassVar[ResponseCode] = ResponseCode.SUCCESS


# Values on a parent prefix record that delegate its derived prefixes (docs/protocol.md).
_DELEGATION_TYPES = ("HS_SITE.PREFIX", "HS_SERV.PREFIX")

# Uncached reads (no cache, or ``fresh``) whose callers stopped waiting but which still
# run: past this many the registry is plainly not answering, and the next such read is
# refused at once rather than leave one more task waiting on it.
LATE_READS_MAX = 8


class Resolver:
    def __init__(
        self,
        registry: Registry,
        served: ServedPrefixes,
        site: Site | None = None,
        *,
        cache: RecordCache | None = None,
        client_timeout_s: float = 1.8,
    ):
        self.registry = registry
        self.client_timeout_s = client_timeout_s  # longest a caller waits on the registry
        self._late_reads = 0
        self.served = served
        self.cache = cache
        self.site = site  # set once the fronts are bound and the site's ports known
        # Set when the node has an upstream: resolution of prefixes served elsewhere.
        self.forwarding: Forwarding | None = None
        # HS_CERT values for a synthesized 0.NA/<prefix> record (node.signing.signer), if signing.
        self.prefix_certs: Callable[[str], tuple[HandleValue, ...]] | None = None

    async def refresh_prefixes(self) -> None:
        rows = await self.registry.list_prefixes()
        await self.served.update(rows, await self.registry.list_homed_prefixes())

    @overload
    async def resolve(
        self,
        handle: str | Handle,
        indexes: Sequence[int] = (),
        types: Sequence[str] = (),
        now: float = 0.0,
        *,
        public_only: bool = False,
        refer: bool = True,
        fresh: bool = False,
        forward: bool = False,
        recursion: int = 0,
        chase: bool = False,
        wire: Literal[False] = False,
    ) -> ResolveResult: ...

    @overload
    async def resolve(
        self,
        handle: str | Handle,
        indexes: Sequence[int] = (),
        types: Sequence[str] = (),
        now: float = 0.0,
        *,
        public_only: bool = False,
        refer: bool = True,
        fresh: bool = False,
        forward: bool = False,
        recursion: int = 0,
        chase: bool = False,
        wire: bool,
    ) -> ResolveResult | WireFound: ...

    async def resolve(
        self,
        handle: str | Handle,
        indexes: Sequence[int] = (),
        types: Sequence[str] = (),
        now: float = 0.0,
        *,
        public_only: bool = False,
        refer: bool = True,
        fresh: bool = False,
        forward: bool = False,
        recursion: int = 0,
        chase: bool = False,
        wire: bool = False,
    ) -> ResolveResult | WireFound:
        """Look a handle up and apply the index/type filter (a union) and, when asked,
        drop values without public read permission. ``now`` (unix seconds) stamps
        synthesized records. ``refer=False`` (the DNRF flag) turns a prefix referral
        into "not found". ``fresh`` reads the registry, not the cache (the REST API's
        ``auth=true``). ``forward``: the caller may be answered through the tree for a
        prefix not served here (its request came ``recursion`` hops already); with
        ``chase`` too, a prefix referral is followed here rather than returned (clients
        older than 2.10 do not follow RC 303). ``wire``: a record of this node's is
        answered as ``WireFound`` (values left in wire form) rather than ``Found``."""
        if isinstance(handle, str):
            text = handle
            try:
                handle = parse_handle(text)
            except HandleSyntaxError as exc:
                return InvalidHandle(text, exc.message)
        prefix = handle.owning_prefix
        if not self.served.serves(prefix):
            if forward and self.forwarding is not None:
                if recursion >= self.forwarding.recursion_limit:
                    return RecursionTooDeep(handle.text, self.forwarding.recursion_limit)
                return await self._forwarded(handle, indexes, types, public_only)
            return NotResponsible(handle.text, prefix, self.served.why_not_served(prefix))
        # One deadline for the whole resolution, however many reads it makes (a referral
        # reads the ancestors' records).
        deadline = asyncio.get_running_loop().time() + self.client_timeout_s
        found = await self._lookup(handle.key, deadline, fresh)
        entry = found.entry
        record = found.raw
        if record is not None:
            stored_wire = record.wire
            if wire and stored_wire is not None:
                # The same selection as below, on the stored bytes: no value decoded or
                # encoded again (None: a record scan cannot read in place; decode it).
                spans = found.spans if found.spans is not None else scan(stored_wire)
                if spans is not None:
                    kept = select(
                        stored_wire,
                        spans,
                        indexes,
                        types,
                        public_only=public_only,
                        redact_type=SECKEY_TYPE,
                        redacted=SHOWN,
                    )
                    if not kept.kept:
                        return ValuesNotFound(handle.text, entry)
                    return WireFound(handle.text, kept, entry, found.stale)
            stored, version = found.decoded(), record.version
        elif handle.is_prefix_record:
            synthesized = self._prefix_record(handle.owning_prefix)
            if synthesized is None:
                referral = await self._referral(handle, refer, deadline)
                if referral is not None and chase and forward and self.forwarding is not None:
                    return await self._chased(handle, referral, indexes, types)
                return referral or HandleNotFound(handle.text)
            # Synthesized from settings and keys, not from a row: never kept.
            stored, version, entry = synthesized, 0, None
        else:
            return HandleNotFound(handle.text, entry)
        values = select_values(stored, indexes, types)
        if public_only:
            values = [v for v in values if v.public_read]
        # Secrets never leave the node, whoever may read the value (node.secrets.vault).
        values = [shown(v) if is_seckey(v) else v for v in values]
        if not values:
            return ValuesNotFound(handle.text, entry)
        registered_as = record.handle if record is not None else handle.text
        return Found(handle.text, registered_as, tuple(values), version, entry, found.stale)

    async def _forwarded(
        self, handle: Handle, indexes: Sequence[int], types: Sequence[str], public_only: bool
    ) -> ResolveResult:
        fwd = self.forwarding
        assert fwd is not None
        try:
            if self.cache is not None:
                # One deadline for this client, whoever else waits on the same fetch: past
                # it a stale copy, or NoAnswer.
                found = await self.cache.get(handle.key, fwd.timeout_s)
            else:
                found = Lookup(await fwd.forwarder.fetch(handle.key), None)
        except (UpstreamUnavailable, NoAnswer) as exc:
            return UpstreamFailed(handle.text, str(exc))
        except TimeoutError:
            return UpstreamFailed(handle.text, f"no answer within {fwd.timeout_s:g} s")
        raw = found.raw
        if raw is None:
            return HandleNotFound(handle.text, found.entry)
        verdict = getattr(raw, "signature", None) or UNCHECKED
        # Identifier records carry the signatures the policy is about; the 0.NA records
        # naming a prefix's servers are the tree's own, unsigned by design.
        if fwd.policy == "require" and verdict != VALID and not handle.is_prefix_record:
            return Unverified(handle.text, verdict, getattr(raw, "detail", ""))
        values = select_values(found.decoded(), indexes, types)
        if public_only:
            values = [v for v in values if v.public_read]
        if not values:
            return ValuesNotFound(handle.text, found.entry)
        return Found(
            handle.text, raw.handle, tuple(values), 0, found.entry, found.stale, signature=verdict
        )

    async def _chased(
        self,
        handle: Handle,
        referral: PrefixReferral,
        indexes: Sequence[int],
        types: Sequence[str],
    ) -> ResolveResult:
        """Follow a prefix referral here, for a client that cannot: ask the referred
        sites for the record (not kept: it answers one old client)."""
        fwd = self.forwarding
        assert fwd is not None
        servers = addresses_of(sites_of(referral.values), handle.text)
        deadline = fwd.forwarder.monotonic() + fwd.timeout_s
        try:
            answer = await fwd.forwarder.asker.ask(servers, handle.text, types, deadline)
        except UpstreamUnavailable as exc:
            return UpstreamFailed(handle.text, str(exc))
        if answer.response_code != ResponseCode.SUCCESS:
            return HandleNotFound(handle.text)
        values = select_values(answer.values, indexes, types)
        return Found(handle.text, answer.handle, tuple(values), 0, signature=UNCHECKED)

    async def _lookup(self, key: str, deadline: float, fresh: bool = False) -> Lookup:
        """The row for ``key``, or DatabaseUnavailable (UpstreamUnavailable for a key
        read upstream) once ``deadline`` (loop time) has passed without one."""
        wait_s = max(0.0, deadline - asyncio.get_running_loop().time())
        try:
            if self.cache is None or fresh:
                return Lookup(await self._read_within(key, wait_s), None)
            return await self.cache.get(key, wait_s)
        except NoAnswer as exc:
            if exc.foreign:
                raise UpstreamUnavailable(str(exc)) from None
            why = f"no answer within {self.client_timeout_s:g} s" if exc.waited_s else exc
            raise DatabaseUnavailable(
                f"registry unreachable at {self.registry.target}: {why}"
            ) from None

    async def _read_within(self, key: str, wait_s: float) -> RawRecord | None:
        """An uncached read, waited on at most ``wait_s``; past it, it goes on alone (a
        driver call cancelled mid-query waits on the server to hear of it: not bounded)."""
        if self._late_reads >= LATE_READS_MAX:
            raise NoAnswer(False, 0.0)
        read = asyncio.get_running_loop().create_task(self.registry.get_handle_raw(key))
        try:
            await asyncio.wait((read,), timeout=wait_s)
        finally:
            if not read.done():  # timed out, or this caller was cancelled
                self._late_reads += 1
                read.add_done_callback(self._late_read_done)
        if not read.done():
            raise NoAnswer(False, wait_s)
        return read.result()

    def _late_read_done(self, read: asyncio.Task[RawRecord | None]) -> None:
        self._late_reads -= 1
        if not read.cancelled():
            read.exception()  # expected (the registry failed): nobody waits to see it

    def _prefix_record(self, prefix: str) -> tuple[HandleValue, ...] | None:
        served, registered = self.served.exact(prefix)
        if not served or self.site is None:
            return None
        values = self.site.prefix_record(prefix, owned=registered)
        if self.prefix_certs is not None:
            values += self.prefix_certs(prefix)
        return values

    async def _referral(
        self, handle: Handle, refer: bool, deadline: float
    ) -> PrefixReferral | None:
        if not refer:
            return None
        for ancestor in prefix_ancestors(handle.owning_prefix)[1:]:
            parent = await self._lookup(normalise(f"{NA_PREFIX}/{ancestor}"), deadline)
            if parent.raw is None:
                continue
            delegation = select_values(parent.decoded(), (), _DELEGATION_TYPES)
            if delegation:
                return PrefixReferral("", tuple(delegation))
        return None
