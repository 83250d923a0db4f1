"""The resolution core: the single entry every front (native, HTTP, DNS) calls.

``resolve`` returns a typed result rather than raising, so each front maps outcomes to
its own wire form (Handle response codes, HTTP statuses) in one place.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from protocol.errors import HandleSyntaxError
from protocol.handle import NA_PREFIX, Handle, is_under, normalise, parse_handle, prefix_ancestors
from protocol.values import HandleValue, select_values
from registry.store import Registry

from .cache.records import Entry, Lookup, RecordCache

if TYPE_CHECKING:
    from .site import Site

# Values on a parent prefix record that delegate its derived prefixes (docs/protocol.md).
_DELEGATION_TYPES = ("HS_SITE.PREFIX", "HS_SERV.PREFIX")


@dataclass(frozen=True, slots=True)
class Found:
    handle: str  # as the client asked for it (replies echo this spelling)
    registered_as: str
    values: tuple[HandleValue, ...]
    version: int
    # The cache entry this answer came from: a front may keep its reply against it.
    # None when the reply must not be kept (no cache, served stale, a racing write).
    entry: Entry | None = None
    stale: bool = False


@dataclass(frozen=True, slots=True)
class HandleNotFound:
    handle: str
    entry: Entry | None = None


@dataclass(frozen=True, slots=True)
class ValuesNotFound:
    handle: str
    entry: Entry | None = None


@dataclass(frozen=True, slots=True)
class NotResponsible:
    """The handle's prefix is not served here (RC 301; forwarding comes later)."""

    handle: str
    prefix: str


@dataclass(frozen=True, slots=True)
class PrefixReferral:
    """RC 303: a derived prefix with no record of its own, delegated by an ancestor's
    HS_SITE.PREFIX / HS_SERV.PREFIX values (the reference answers with just those)."""

    handle: str
    values: tuple[HandleValue, ...]


@dataclass(frozen=True, slots=True)
class InvalidHandle:
    handle: str
    reason: str


ResolveResult = Found | HandleNotFound | ValuesNotFound | NotResponsible | PrefixReferral | InvalidHandle


class ServedPrefixes:
    """Which prefixes this node answers for: configured ones plus enabled registry prefixes."""

    def __init__(self, configured: Iterable[str] = ()):
        self._configured = tuple(configured)
        self._registered: tuple[str, ...] = ()

    def update_registered(self, prefixes: Iterable[str]) -> None:
        self._registered = tuple(prefixes)

    def all(self) -> tuple[str, ...]:
        return self._configured + self._registered

    def serves(self, prefix: str) -> bool:
        return any(is_under(prefix, p) for p in self.all())

    def exact(self, prefix: str) -> tuple[bool, bool]:
        """(served as such, registered to an enterprise)."""
        key = normalise(prefix)
        registered = any(normalise(p) == key for p in self._registered)
        return registered or any(normalise(p) == key for p in self._configured), registered


class Resolver:
    def __init__(
        self, registry: Registry, served: ServedPrefixes, site: Site | None = None,
        *, cache: RecordCache | None = None,
    ):  # fmt: skip
        self.registry = registry
        self.served = served
        self.cache = cache
        self.site = site  # set once the fronts are bound and the site's ports known
        # HS_CERT values for a synthesized 0.NA/<prefix> record (node.signing), if signing.
        self.prefix_certs: Callable[[str], tuple[HandleValue, ...]] | None = None

    async def refresh_prefixes(self) -> None:
        rows = await self.registry.list_prefixes()
        self.served.update_registered(r["prefix"] for r in rows if r["status"] == 1)

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
            try:
                handle = parse_handle(handle)
            except HandleSyntaxError as exc:
                return InvalidHandle(handle, exc.message)
        if not self.served.serves(handle.owning_prefix):
            return NotResponsible(handle.text, handle.owning_prefix)
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
