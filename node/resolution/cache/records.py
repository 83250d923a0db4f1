"""The record cache: handle rows by normalised key, and the ready-to-send replies each
front built from them.

One ``Entry`` per handle (or per handle known not to exist) holds the row as stored,
in wire form, and the replies derived from it. Fronts keep their replies in maps this
cache owns (``reply_map``), keyed on the request shape, so a hit is one dict lookup in
the front and an invalidation drops the row and every reply built from it at once.

Coherence. Entries are trusted only while the invalidation listener is connected
(``coherent``): every committed write anywhere reaches ``invalidate`` through
PostgreSQL NOTIFY. A read racing a write must not cache what it read before the write:
``invalidate`` poisons the read in flight for that key, so its result is returned to
its callers but not stored; and a reply a front built from an entry is kept only while
that entry is live (not replaced or dropped since). These checks order reads by when
they were invalidated rather than by the row's version number, which a deleted and
recreated handle starts again at 1. When the listener drops, notifications may be lost: the
fronts' replies are dropped and rows are kept only as stale candidates until the
listener is back and everything is flushed.

Records from upstream. A key of a prefix served elsewhere is read from upstream
(node.resolution.forward) rather than the registry: such an entry is ``foreign``. No
notification ever concerns it, so coherence does not gate it (a flush keeps it, the
listener being down does not stop its hits); its TTL alone bounds it, and when upstream
cannot be reached it is served stale like a registry row, each source tracked apart.

Policy. Freshness is the smallest TTL among the record's values, capped; not-found is
cached for a short TTL (a creation notifies and drops it). Entries and bytes are
bounded, least recently used out first. Concurrent misses for one key make one read.

Serve-stale (RFC 8767). A caller waits for a read at most its client timeout (``get``'s
``timeout_s``); the read goes on without it, once per handle however many callers gave
up on it. A source (the registry, or upstream) that failed, or kept a caller waiting
that long, is *down*: an expired row, or one the listener can no longer vouch for, is
then answered at once for up to ``stale_max_s`` past its expiry, and the source is
asked again by one read at a time: a background refresh of a stale-served handle at
most every ``stale_recheck_s``, or the read of a handle with nothing stale to answer
(its caller still waits no longer than its timeout; others are told "no answer" at
once). A hung server (SIGSTOP) and a dead one (connection refused) are thus answered
alike, the hung one after at most one client timeout; any answer from the source, or
the listener connecting, ends it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from protocol.codes import TTLType
from protocol.valuecodec import decode_values
from protocol.values import HandleValue
from registry.errors import DatabaseUnavailable
from registry.rows import RawRecord

log = logging.getLogger("idnode.cache")

FIRST = asyncio.FIRST_COMPLETED
# A source going down (or coming back) is logged at most this often, in seconds.
LOG_EVERY_S = 10.0

# CPython cost of an entry beyond its payload (the OrderedDict node, the Entry, its
# expiry, object headers), and of a kept reply beyond its payload (the map slot, the
# reply object), measured with 1e5 entries: the byte bound tracks the RSS.
ENTRY_OVERHEAD = 380
REPLY_OVERHEAD = 220
# More shapes than this per handle (index/type combinations) are answered, not cached:
# a client cycling through filters must not grow one entry without bound.
MAX_REPLIES_PER_ENTRY = 8


class NoAnswer(Exception):
    """Nothing to answer with: the source did not answer within the caller's timeout,
    or is down with a read of it under way, and nothing stale is cached (RC 3: retry)."""

    def __init__(self, foreign: bool, waited_s: float):
        self.foreign = foreign  # upstream, not the registry
        self.waited_s = waited_s
        super().__init__(
            f"no answer within {waited_s:g} s"
            if waited_s > 0
            else "not answering (a read of it is still under way)"
        )


class Kept(Protocol):
    """A front's ready-to-send reply, kept against the entry it was built from."""

    entry: Entry

    def nbytes(self) -> int:
        """Memory of its own (bytes shared with the entry, such as the values, excluded)."""
        ...


ReplyMap = dict[bytes, Any]  # shape -> Kept


@dataclass(frozen=True, slots=True)
class CachePolicy:
    max_entries: int = 1_000_000
    max_bytes: int = 768 << 20
    ttl_cap_s: float = 600.0
    negative_ttl_s: float = 5.0
    stale_max_s: float = 3600.0
    stale_recheck_s: float = 5.0


class Entry:
    """One handle as stored (or known absent), and the replies kept against it. It
    reads like a ``RawRecord`` (``handle``, ``wire``, ``version``, ``decoded``): a million
    of these are the cache, so there is no second object per row."""

    __slots__ = (
        "expires",
        "foreign",
        "handle",
        "key",
        "live",
        "replies",
        "signature",
        "version",
        "wire",
    )

    def __init__(self, key: str, raw: RawRecord | None, expires: float, foreign: bool = False):
        self.key = key
        # Registered spellings are usually the key itself: share the string.
        self.handle = key if raw is None or raw.handle == key else raw.handle
        self.wire = raw.wire if raw is not None else None  # None: the handle does not exist
        self.version = raw.version if raw is not None else 0
        self.expires = expires  # monotonic seconds
        self.live = True
        # Flat (map, shape, map, shape...): a tuple of two costs less than a list of one
        # pair, times a million entries.
        self.replies: tuple[Any, ...] | None = None
        # Fetched from upstream (node.resolution.forward), not read from the registry:
        # no notification ever invalidates it, so its TTL alone bounds it, and a front
        # serves it only to clients allowed recursion.
        self.foreign = foreign
        # For a foreign record: how its signature checked ("valid", "invalid", "unsigned",
        # "unchecked"); None for a local one.
        self.signature: str | None = getattr(raw, "signature", None)

    @property
    def raw(self) -> Entry | None:
        return self if self.wire is not None else None

    def decoded(self) -> tuple[HandleValue, ...]:
        return decode_values(self.wire) if self.wire is not None else ()

    def nbytes(self) -> int:
        own = ENTRY_OVERHEAD + len(self.key) + len(self.wire or b"")
        if self.handle is not self.key:
            own += len(self.handle)
        replies = self.replies or ()
        for i in range(0, len(replies), 2):
            kept = replies[i].get(replies[i + 1])
            if kept is not None:
                own += REPLY_OVERHEAD + len(replies[i + 1]) + kept.nbytes()
        return own


@dataclass(frozen=True, slots=True)
class Lookup:
    raw: RawRecord | Entry | None
    # The entry replies may be cached against; None when the answer must not be
    # (served stale, read while incoherent, a poisoned read, TTL 0).
    entry: Entry | None
    stale: bool = False
    values: tuple[HandleValue, ...] | None = None  # decoded already, on a fresh read

    def decoded(self) -> tuple[HandleValue, ...]:
        if self.values is not None:
            return self.values
        return self.raw.decoded() if self.raw is not None else ()


class _Flight:
    __slots__ = ("foreign", "joins", "poisoned", "task")

    def __init__(self, foreign: bool) -> None:
        self.task: asyncio.Task[Lookup] | None = None
        self.poisoned = False
        self.joins = 0
        self.foreign = foreign


class _Source:
    """Where reads go (the registry, or upstream), and whether it answers."""

    __slots__ = ("down", "gone", "logged", "name", "reads", "recheck_at", "whole")

    def __init__(self, name: str, *, whole: bool) -> None:
        self.name = name
        # One server answers every key (the registry), so one key's read that is too
        # slow says the rest will be too. Upstream is many sites: a slow one says
        # nothing of the others, and a slow read does not make upstream down.
        self.whole = whole
        self.down = False  # failed or too slow, and not answered since
        self.recheck_at = 0.0  # monotonic: no background refresh before then
        self.reads = 0  # in flight now, whether anyone still waits on them or not
        # Done when the source is found down: callers waiting on other reads of it stop
        # waiting for theirs and answer stale at once.
        self.gone: asyncio.Future[None] | None = None
        # When "down" and "up" were last logged (monotonic): a registry answering just
        # too slowly, over and over, must not log a line per request.
        self.logged = {True: -LOG_EVERY_S, False: -LOG_EVERY_S}

    def log_now(self, down: bool, now: float) -> bool:
        if now - self.logged[down] < LOG_EVERY_S:
            return False
        self.logged[down] = now
        return True

    def went_down(self) -> asyncio.Future[None]:
        if self.gone is None:
            self.gone = asyncio.get_running_loop().create_future()
        return self.gone


def _retrieve(task: asyncio.Task[Lookup]) -> None:
    """A read nobody waits on any more may still fail: its error is expected, not lost."""
    if not task.cancelled():
        task.exception()


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    reads: int = 0  # registry reads made (misses minus single-flight joins)
    joins: int = 0
    evictions: int = 0
    invalidations: int = 0
    flushes: int = 0
    stale_served: int = 0
    negative_hits: int = 0


class RecordCache:
    def __init__(
        self,
        read: Callable[[str], Awaitable[RawRecord | None]],
        policy: CachePolicy,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        clock: Callable[[], float] = time.time,
        foreign: Callable[[str], bool] = lambda key: False,
        unavailable: tuple[type[Exception], ...] = (DatabaseUnavailable,),
    ):
        self._read = read
        # Which keys ``read`` answers from upstream rather than the registry, and the
        # errors meaning "the source cannot be reached" (serve stale then).
        self._foreign = foreign
        self._unavailable = unavailable
        self.policy = policy
        self.monotonic = monotonic
        self.clock = clock  # wall clock, for values with an absolute TTL
        self.entries: OrderedDict[str, Entry] = OrderedDict()
        self.bytes = 0
        self.coherent = False  # until the listener is connected
        self.stats = CacheStats()
        self._maps: dict[str, ReplyMap] = {}
        self._flights: dict[str, _Flight] = {}
        # Per source, keyed on "foreign": the registry (False) and upstream (True).
        self._sources = {
            False: _Source("registry", whole=True),
            True: _Source("upstream", whole=False),
        }
        self._watchers: dict[str, list[asyncio.Future[None]]] = {}

    # -- lookups -------------------------------------------------------------------

    async def get(self, key: str, timeout_s: float | None = None) -> Lookup:
        """The row for ``key`` (or its absence), waiting for a read at most ``timeout_s``
        (None: as long as the read takes). Past it, or at once while the source is down,
        a stale copy if there is one, else ``NoAnswer``; errors of the source itself
        (``unavailable``) when it failed with nothing stale to answer."""
        now = self.monotonic()
        entry = self.entries.get(key)
        if entry is not None and (self.coherent or entry.foreign) and entry.expires > now:
            self.entries.move_to_end(key)
            self.stats.hits += 1
            if entry.wire is None:
                self.stats.negative_hits += 1
            return Lookup(entry.raw, entry)
        self.stats.misses += 1
        flight = self._flights.get(key)
        foreign = flight.foreign if flight is not None else self._foreign(key)
        source = self._sources[foreign]
        if source.down:
            stale = self._stale(key)
            if stale is not None:
                if flight is None and source.reads == 0 and now >= source.recheck_at:
                    self._start(key, foreign)  # the refresh; this caller does not wait
                return stale
            if source.whole and source.reads > 0:
                # One read at a time of a registry that is down, and only the caller that
                # started it waits on it (for its timeout at most).
                raise NoAnswer(foreign, 0.0)
        if flight is None:
            flight = self._start(key, foreign)
        else:
            flight.joins += 1
            self.stats.joins += 1
        task = flight.task
        assert task is not None
        if timeout_s is None:
            # shield: one caller giving up must not cancel the others' read.
            return await asyncio.shield(task)
        # asyncio.wait neither cancels the read at the timeout nor when this caller is
        # cancelled: it goes on for the others, and to refresh the entry.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        if source.whole and not source.down:
            await asyncio.wait((task, source.went_down()), timeout=timeout_s, return_when=FIRST)
            if not task.done() and source.down:  # found down by another caller meanwhile
                stale = self._stale(key)
                if stale is not None:
                    return stale
        if not task.done():
            await asyncio.wait((task,), timeout=max(0.0, deadline - loop.time()))
        if task.done():
            return task.result()
        return self._late(key, source, timeout_s)

    def _start(self, key: str, foreign: bool) -> _Flight:
        flight = self._flights[key] = _Flight(foreign)
        self._sources[foreign].reads += 1  # from now: a caller in this same tick sees it
        flight.task = asyncio.get_running_loop().create_task(self._fill(key, flight))
        flight.task.add_done_callback(_retrieve)
        return flight

    def _late(self, key: str, source: _Source, waited_s: float) -> Lookup:
        """A caller waited its whole timeout: the registry is down until it answers."""
        if source.whole:
            source.recheck_at = self.monotonic() + self.policy.stale_recheck_s
            if not source.down:
                self._down(source, f"no answer within {waited_s:g} s")
        stale = self._stale(key)
        if stale is None:
            raise NoAnswer(not source.whole, waited_s)
        return stale

    def _down(self, source: _Source, why: str) -> None:
        source.down = True
        gone, source.gone = source.gone, None
        if gone is not None:
            gone.set_result(None)
        if source.log_now(True, self.monotonic()):
            log.warning(
                "%s unreachable (%s): serving cached records past their TTL for up to %.0f s",
                source.name,
                why,
                self.policy.stale_max_s,
            )

    def _up(self, source: _Source) -> None:
        source.recheck_at = 0.0
        if source.down:
            source.down = False
            if source.log_now(False, self.monotonic()):
                log.info("%s reachable again: stale answers stopped", source.name)

    async def _fill(self, key: str, flight: _Flight) -> Lookup:
        foreign = flight.foreign
        source = self._sources[foreign]
        self.stats.reads += 1
        try:
            raw = await self._read(key)
        except self._unavailable as exc:
            source.recheck_at = self.monotonic() + self.policy.stale_recheck_s
            if not source.down:
                self._down(source, type(exc).__name__)
            stale = self._stale(key)
            if stale is None:
                raise
            return stale
        finally:
            source.reads -= 1
            del self._flights[key]
        self._up(source)
        values = raw.decoded() if raw is not None else None
        if not foreign and (flight.poisoned or not self.coherent):
            return Lookup(raw, None, values=values)
        ttl = self._ttl(values)
        if ttl <= 0:
            self._drop(key)
            return Lookup(raw, None, values=values)
        # Not poisoned: no write to this key was heard of since the read began, so the
        # row read is at least as new as any entry it replaces (an expired or stale one).
        entry = self._insert(key, raw, ttl, foreign)
        return Lookup(raw, entry, values=values)

    def _stale(self, key: str) -> Lookup | None:
        entry = self.entries.get(key)
        if entry is None or self.monotonic() > entry.expires + self.policy.stale_max_s:
            return None
        self.stats.stale_served += 1
        return Lookup(entry.raw, None, stale=True)

    def _ttl(self, values: tuple[HandleValue, ...] | None) -> float:
        if values is None:
            return self.policy.negative_ttl_s
        ttl = self.policy.ttl_cap_s
        wall = None
        for v in values:
            if v.ttl_type == TTLType.ABSOLUTE:
                wall = self.clock() if wall is None else wall
                ttl = min(ttl, v.ttl - wall)
            else:
                ttl = min(ttl, v.ttl)
        return ttl

    # -- storing -------------------------------------------------------------------

    def _insert(self, key: str, raw: RawRecord | None, ttl: float, foreign: bool = False) -> Entry:
        self._drop(key)
        entry = Entry(key, raw, self.monotonic() + ttl, foreign)
        self.entries[key] = entry
        self.bytes += entry.nbytes()
        self._evict()
        return entry

    def reply_map(self, front: str) -> ReplyMap:
        """The map a front keeps its ready-to-send replies in: shape -> ``Kept``."""
        return self._maps.setdefault(front, {})

    def add_reply(self, replies: ReplyMap, shape: bytes, entry: Entry, reply: Kept) -> bool:
        """Keep a reply built from ``entry`` (False: not kept). A reply is kept only
        while its entry is the live one for its handle and the cache is coherent."""
        if not entry.live or not (self.coherent or entry.foreign) or shape in replies:
            return False
        if entry.replies is None:
            entry.replies = (replies, shape)
        elif len(entry.replies) >= 2 * MAX_REPLIES_PER_ENTRY:
            return False
        else:
            entry.replies += (replies, shape)
        reply.entry = entry
        replies[shape] = reply
        self.bytes += REPLY_OVERHEAD + len(shape) + reply.nbytes()
        self._evict()
        return entry.live

    def touch(self, entry: Entry) -> None:
        """A front served a reply from ``entry``: most recently used now."""
        self.entries.move_to_end(entry.key)

    def _evict(self) -> None:
        p = self.policy
        while self.entries and (len(self.entries) > p.max_entries or self.bytes > p.max_bytes):
            _, entry = self.entries.popitem(last=False)
            self._unlink(entry)
            self.stats.evictions += 1

    def _unlink(self, entry: Entry) -> None:
        entry.live = False
        self.bytes -= entry.nbytes()
        replies = entry.replies
        if replies:
            for i in range(0, len(replies), 2):
                replies[i].pop(replies[i + 1], None)

    def _drop(self, key: str) -> bool:
        entry = self.entries.pop(key, None)
        if entry is None:
            return False
        self._unlink(entry)
        return True

    # -- coherence -----------------------------------------------------------------

    def invalidate(self, key: str) -> None:
        """A write to ``key`` committed: forget it, and do not let a read that started
        before the write store its result."""
        flight = self._flights.get(key)
        if flight is not None:
            flight.poisoned = True
        if self._drop(key):
            self.stats.invalidations += 1
        watchers = self._watchers.pop(key, None)
        if watchers:
            for fut in watchers:
                if not fut.done():
                    fut.set_result(None)

    def flush(self) -> None:
        """Forget every registry row (notifications may have been lost); records from
        upstream stay, bounded by their TTLs alone, but lose their kept replies."""
        for flight in self._flights.values():
            flight.poisoned = True
        for key in [k for k, e in self.entries.items() if not e.foreign]:
            self.entries.pop(key).live = False
        for entry in self.entries.values():
            entry.replies = None
        for replies in self._maps.values():
            replies.clear()
        self.bytes = sum(e.nbytes() for e in self.entries.values())
        self.stats.flushes += 1

    def set_coherent(self, coherent: bool) -> None:
        """Listener state. Losing it stops every front's hits at once (their replies
        are dropped) and keeps rows only for serve-stale; regaining it (after a flush)
        lets the cache fill again."""
        self.coherent = coherent
        if coherent:
            self._up(self._sources[False])  # the listener reached the registry: it answers
        else:
            for flight in self._flights.values():
                flight.poisoned = True
            for entry in self.entries.values():
                entry.replies = None
            for replies in self._maps.values():
                replies.clear()
            self.bytes = sum(e.nbytes() for e in self.entries.values())

    def invalidated(self, key: str) -> asyncio.Future[None]:
        """A future done at the next invalidation of ``key`` (tests and the lag
        benchmark wait on it instead of sleeping)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._watchers.setdefault(key, []).append(fut)
        return fut
