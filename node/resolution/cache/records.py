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
bounded by a clock (second chance): every hit marks its entry used, and eviction takes the
oldest entry not used since the clock's hand last passed it, clearing the marks it passes.
That is least-recently-used near enough, for an attribute store per hit where an LRU list
moves a node (and costs 50 bytes an entry more). Concurrent misses for one key make one
read.

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
import math
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from protocol.codes import TTLType
from protocol.valuecodec import decode_values
from protocol.values import HandleValue
from protocol.wirescan import TTL, TTL_TYPE, Span, scan
from registry.errors import DatabaseUnavailable
from registry.rows import RawRecord

log = logging.getLogger("idnode.cache")

# A source going down (or coming back) is logged at most this often, in seconds.
LOG_EVERY_S = 10.0

# What the cache's structures cost beyond their payload bytes (key, values, shapes, a
# reply's own bytes), measured with loadtest/memory_inproc.py: 1e5-1e6 records of 573
# bytes, each with its native reply; the estimate is within a few percent of the RSS
# they cause (tests/node/resolution/cache/test_memory.py), so the byte bound is one on
# memory. An entry (~250): the Entry (96), its key's string header (49, to 16), its
# values' bytes header and malloc's rounding (33 + ~18), its slot in the entries dict
# (31-38) and in the clock's hand (8). A kept reply (~200): the front's reply object
# (80), the headers of its shape's and of its own bytes (2 x 33, to 16), its slot in
# the front's map (31-38).
ENTRY_OVERHEAD = 250
REPLY_OVERHEAD = 200
# A registered spelling other than the key: a string of its own.
STRING_OVERHEAD = 56
# Expiries are rounded down to this (seconds) so that the entries filled in one burst
# share one float object (32 bytes each otherwise).
EXPIRY_STEP = 1 / 64
_ABSOLUTE = int(TTLType.ABSOLUTE)  # compared as a plain int: an IntEnum's __eq__ is slow
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
    of these are the cache, so there is no second object per row, and no slot to spare
    (eight slots take the 96 bytes seven do, a ninth 16 more)."""

    __slots__ = ("expires", "foreign", "handle", "live", "replies", "used", "version", "wire")

    def __init__(self, key: str, raw: RawRecord | None, expires: float, foreign: bool = False):
        # Registered spellings are usually the key itself: share the string. (The key is
        # the entries dict's; the entry needs none of its own.)
        self.handle = key if raw is None or raw.handle == key else raw.handle
        self.wire = raw.wire if raw is not None else None  # None: the handle does not exist
        self.version = raw.version if raw is not None else 0
        self.expires = expires  # monotonic seconds
        self.live = True  # the entry for its key, not replaced or dropped since
        # Hit since the clock's hand last passed (RecordCache._victim).
        self.used = False
        # The shapes of the replies the fronts keep against it (in their maps): one
        # bytes, or a tuple of them when there are several (a tuple costs 64 bytes,
        # times a million entries).
        self.replies: bytes | tuple[bytes, ...] | None = None
        # None: read from the registry. Fetched from upstream (node.resolution.forward):
        # how its signature checked ("valid", "invalid", "unsigned", "unchecked"). No
        # notification ever invalidates such an entry, so its TTL alone bounds it, and a
        # front serves it only to clients allowed recursion. (Rare: one slot for both.)
        self.foreign: str | None = None
        if foreign:
            self.foreign = getattr(raw, "signature", None) or "unchecked"

    @property
    def signature(self) -> str | None:
        """How a record from upstream checked (``ForeignRecord.signature``); None here."""
        return self.foreign

    @property
    def raw(self) -> Entry | None:
        return self if self.wire is not None else None

    def decoded(self) -> tuple[HandleValue, ...]:
        return decode_values(self.wire) if self.wire is not None else ()

    def shapes(self) -> tuple[bytes, ...]:
        """The shapes of its kept replies, each once."""
        replies = self.replies
        if replies is None:
            return ()
        if isinstance(replies, bytes):
            return (replies,)
        return tuple(dict.fromkeys(replies))


@dataclass(frozen=True, slots=True)
class Lookup:
    raw: RawRecord | Entry | None
    # The entry replies may be cached against; None when the answer must not be
    # (served stale, read while incoherent, a poisoned read, TTL 0).
    entry: Entry | None
    stale: bool = False
    values: tuple[HandleValue, ...] | None = None  # decoded already, on a fresh read
    # Where the values lie in raw's wire form (protocol.wirescan.scan), on a fresh read.
    spans: list[Span] | None = None

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


async def _first(
    loop: asyncio.AbstractEventLoop,
    task: asyncio.Future[Any],
    other: asyncio.Future[None] | None,
    timeout_s: float,
) -> None:
    """Until ``task`` or ``other`` is done or ``timeout_s`` has passed, cancelling
    neither: ``asyncio.wait(..., return_when=FIRST_COMPLETED)`` for exactly two futures,
    without the sets and checks that cost every miss ~10 µs more."""
    if task.done() or (other is not None and other.done()):
        return
    woken = loop.create_future()

    def wake(_: object = None) -> None:
        if not woken.done():
            woken.set_result(None)

    timer = loop.call_later(timeout_s, wake)
    task.add_done_callback(wake)
    if other is not None:
        other.add_done_callback(wake)
    try:
        await woken
    finally:
        timer.cancel()
        task.remove_done_callback(wake)
        if other is not None:
            other.remove_done_callback(wake)


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
        # In insertion order: the order the clock's hand goes round in.
        self.entries: dict[str, Entry] = {}
        self.bytes = 0
        # The clock's hand (``_victim``): the keys in the order it meets them (a snapshot
        # of the entries' order, taken each time round), where it stands, and how many
        # keys were dropped since the snapshot (left in it, to be skipped).
        self._hand: list[str] = []
        self._at = 0
        self._gone = 0
        self._expiries: dict[float, float] = {}
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
            entry.used = True
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
            await _first(loop, task, source.went_down(), timeout_s)
            if not task.done() and source.down:  # found down by another caller meanwhile
                stale = self._stale(key)
                if stale is not None:
                    return stale
        if not task.done():
            await _first(loop, task, None, max(0.0, deadline - loop.time()))
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
        # Freshness read in place (protocol.wirescan), and the spans handed on for the
        # resolver's selection: the values are decoded by whoever needs them as objects,
        # not here; a record the scan cannot read is decoded (and its error raised) here.
        spans = scan(raw.wire) if raw is not None else None
        values = raw.decoded() if raw is not None and spans is None else None
        if not foreign and (flight.poisoned or not self.coherent):
            return Lookup(raw, None, values=values, spans=spans)
        ttl = self._ttl(values) if spans is None else self._ttl_of(spans)
        if ttl <= 0:
            self._drop(key)
            return Lookup(raw, None, values=values, spans=spans)
        # Not poisoned: no write to this key was heard of since the read began, so the
        # row read is at least as new as any entry it replaces (an expired or stale one).
        entry = self._insert(key, raw, ttl, foreign)
        return Lookup(raw, entry, values=values, spans=spans)

    def _stale(self, key: str) -> Lookup | None:
        entry = self.entries.get(key)
        if entry is None or self.monotonic() > entry.expires + self.policy.stale_max_s:
            return None
        self.stats.stale_served += 1
        return Lookup(entry.raw, None, stale=True)

    def _ttl_of(self, spans: list[Span]) -> float:
        """``_ttl`` from the values' spans (``protocol.wirescan.scan``)."""
        ttl = self.policy.ttl_cap_s
        wall = None
        for s in spans:
            ttl_type, value_ttl = s[TTL_TYPE], s[TTL]
            if ttl_type == _ABSOLUTE:
                wall = self.clock() if wall is None else wall
                ttl = min(ttl, value_ttl - wall)
            else:
                ttl = min(ttl, value_ttl)
        return ttl

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
        refilled = self._drop(key)
        entry = Entry(key, raw, self._expiry(self.monotonic() + ttl), foreign)
        # A refill (expired, or stale) was asked for again: used. Its key may still be
        # ahead of the hand at its old place, where a new entry would go first.
        entry.used = refilled
        self.entries[key] = entry
        self.bytes += self._cost(key, entry)
        self._evict()
        return entry

    def _expiry(self, at: float) -> float:
        """``at``, rounded down to EXPIRY_STEP: one float object for all the entries
        filled at once with the same TTL."""
        at = math.floor(at / EXPIRY_STEP) * EXPIRY_STEP
        shared = self._expiries.setdefault(at, at)
        if len(self._expiries) > 64:
            self._expiries.clear()
        return shared

    def reply_map(self, front: str) -> ReplyMap:
        """The map a front keeps its ready-to-send replies in: shape -> ``Kept``."""
        return self._maps.setdefault(front, {})

    def add_reply(self, replies: ReplyMap, shape: bytes, entry: Entry, reply: Kept) -> bool:
        """Keep a reply built from ``entry`` (False: not kept). A reply is kept only
        while its entry is the live one for its handle and the cache is coherent."""
        if not entry.live or not (self.coherent or entry.foreign) or shape in replies:
            return False
        shapes = entry.replies
        if shapes is None:
            entry.replies = shape
        elif isinstance(shapes, bytes):
            entry.replies = (shapes, shape)
        elif len(shapes) >= MAX_REPLIES_PER_ENTRY:
            return False
        else:
            entry.replies = (*shapes, shape)
        reply.entry = entry
        replies[shape] = reply
        self.bytes += REPLY_OVERHEAD + len(shape) + reply.nbytes()
        self._evict()
        return entry.live

    def touch(self, entry: Entry) -> None:
        """A front served a reply from ``entry``: used since the clock's hand passed."""
        entry.used = True

    def _kept(self, entry: Entry) -> Iterator[tuple[ReplyMap, bytes, Kept]]:
        """The replies kept against ``entry``: (map, shape, reply)."""
        for shape in entry.shapes():
            for replies in self._maps.values():
                kept = replies.get(shape)
                if kept is not None and kept.entry is entry:
                    yield replies, shape, kept

    def _cost(self, key: str, entry: Entry) -> int:
        """The memory ``entry`` holds, its kept replies included (an estimate: see
        ENTRY_OVERHEAD): what the byte bound counts."""
        own = ENTRY_OVERHEAD + len(key) + len(entry.wire or b"")
        if entry.handle != key:
            own += STRING_OVERHEAD + len(entry.handle)
        for _, shape, kept in self._kept(entry):
            own += REPLY_OVERHEAD + len(shape) + kept.nbytes()
        return own

    def _evict(self) -> None:
        p = self.policy
        entries = self.entries
        while entries and (len(entries) > p.max_entries or self.bytes > p.max_bytes):
            key = self._victim()
            self._unlink(key, entries.pop(key))
            self.stats.evictions += 1

    def _victim(self) -> str:
        """The key of the next entry, in the order the hand goes round, not used since
        the hand last passed it; the used ones it passes get a second chance (their
        mark cleared). Amortised O(1): each step clears a mark a hit set, or skips a key
        dropped since the snapshot, or ends at the victim."""
        entries = self.entries
        while True:
            if self._at >= len(self._hand):
                # Round again: the entries as they are now, oldest first. (A dict cannot
                # be iterated while it changes, nor resumed where one left off.)
                self._hand, self._at, self._gone = list(entries), 0, 0
            key = self._hand[self._at]
            self._at += 1
            entry = entries.get(key)
            if entry is None:
                continue  # dropped since the snapshot
            if entry.used:
                entry.used = False
                continue
            return key

    def _unlink(self, key: str, entry: Entry) -> None:
        entry.live = False
        self.bytes -= self._cost(key, entry)
        for replies, shape, _ in list(self._kept(entry)):
            del replies[shape]

    def _drop(self, key: str) -> bool:
        entry = self.entries.pop(key, None)
        if entry is None:
            return False
        self._unlink(key, entry)
        # Keys dropped stay in the hand's snapshot until it passes them: past half of
        # what is left of it, leave out the dropped ones at once (their strings are
        # held there otherwise, however long until the next eviction).
        self._gone += 1
        ahead = len(self._hand) - self._at
        if self._gone > 256 and 2 * self._gone > ahead:
            self._hand = [k for k in self._hand[self._at :] if k in self.entries]
            self._at, self._gone = 0, 0
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
        self._hand, self._at, self._gone = [], 0, 0
        self.bytes = sum(self._cost(k, e) for k, e in self.entries.items())
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
            self.bytes = sum(self._cost(k, e) for k, e in self.entries.items())

    def invalidated(self, key: str) -> asyncio.Future[None]:
        """A future done at the next invalidation of ``key`` (tests and the lag
        benchmark wait on it instead of sleeping)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._watchers.setdefault(key, []).append(fut)
        return fut
