"""The resolution core: the single entry every front (native, HTTP, DNS) calls.

``resolve`` returns a typed outcome (``node.resolution.outcomes``) rather than raising;
each outcome carries its response code and message, which the fronts put in their own
wire form (native replies, HTTP statuses, the record page).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from node.resolution.cache.records import Lookup, RecordCache
from node.resolution.outcomes import (
    Found,
    HandleNotFound,
    InvalidHandle,
    NotResponsible,
    PrefixReferral,
    ResolveResult,
    ValuesNotFound,
)
from node.resolution.prefixes import ServedPrefixes
from node.secrets.vault import is_seckey, shown
from protocol.errors import HandleSyntaxError
from protocol.handle import NA_PREFIX, Handle, normalise, parse_handle, prefix_ancestors
from protocol.values import HandleValue, select_values
from registry.store import Registry

if TYPE_CHECKING:
    from node.resolution.site import Site

# Values on a parent prefix record that delegate its derived prefixes (docs/protocol.md).
_DELEGATION_TYPES = ("HS_SITE.PREFIX", "HS_SERV.PREFIX")


class Resolver:
    def __init__(
        self,
        registry: Registry,
        served: ServedPrefixes,
        site: Site | None = None,
        *,
        cache: RecordCache | None = None,
    ):
        self.registry = registry
        self.served = served
        self.cache = cache
        self.site = site  # set once the fronts are bound and the site's ports known
        # HS_CERT values for a synthesized 0.NA/<prefix> record (node.signing.signer), if signing.
        self.prefix_certs: Callable[[str], tuple[HandleValue, ...]] | None = None

    async def refresh_prefixes(self) -> None:
        rows = await self.registry.list_prefixes()
        await self.served.update(rows, await self.registry.list_homed_prefixes())

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
    ) -> ResolveResult:
        """Look a handle up and apply the index/type filter (a union) and, when asked,
        drop values without public read permission. ``now`` (unix seconds) stamps
        synthesized records. ``refer=False`` (the DNRF flag) turns a prefix referral
        into "not found". ``fresh`` reads the registry, not the cache (the REST API's
        ``auth=true``)."""
        if isinstance(handle, str):
            text = handle
            try:
                handle = parse_handle(text)
            except HandleSyntaxError as exc:
                return InvalidHandle(text, exc.message)
        prefix = handle.owning_prefix
        if not self.served.serves(prefix):
            return NotResponsible(handle.text, prefix, self.served.why_not_served(prefix))
        found = await self._lookup(handle.key, fresh)
        entry = found.entry
        record = found.raw
        if record is not None:
            stored, version = found.decoded(), record.version
        elif handle.is_prefix_record:
            synthesized = self._prefix_record(handle.owning_prefix)
            if synthesized is None:
                referral = await self._referral(handle, refer)
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

    async def _lookup(self, key: str, fresh: bool = False) -> Lookup:
        if self.cache is None or fresh:
            return Lookup(await self.registry.get_handle_raw(key), None)
        return await self.cache.get(key)

    def _prefix_record(self, prefix: str) -> tuple[HandleValue, ...] | None:
        served, registered = self.served.exact(prefix)
        if not served or self.site is None:
            return None
        values = self.site.prefix_record(prefix, owned=registered)
        if self.prefix_certs is not None:
            values += self.prefix_certs(prefix)
        return values

    async def _referral(self, handle: Handle, refer: bool) -> PrefixReferral | None:
        if not refer:
            return None
        for ancestor in prefix_ancestors(handle.owning_prefix)[1:]:
            parent = await self._lookup(normalise(f"{NA_PREFIX}/{ancestor}"))
            if parent.raw is None:
                continue
            delegation = select_values(parent.decoded(), (), _DELEGATION_TYPES)
            if delegation:
                return PrefixReferral("", tuple(delegation))
        return None
