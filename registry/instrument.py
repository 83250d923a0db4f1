"""How the registry's connection pool and its queries are doing, counted where every
registry call passes: the pool's ``acquire`` and the connection's query methods.

Registry code calls ``pool.fetch`` / ``conn.fetchrow`` with SQL from ``q(name)`` at some
eighty places; timing each call site would bury them. Instead ``TimedConnection``
overrides the connection's query methods (``Pool.fetch`` and friends run through them
too) and labels each query with the name ``q`` gave it (``registry.queries.query_name``),
and ``InstrumentedPool`` times ``acquire``, counting the callers waiting for a
connection meanwhile.

The counts are plain integers and lists, bumped on the event loop: a Prometheus
histogram's ``observe`` takes a lock, and these run for every resolution read. The node
turns them into metric families when ``/metrics`` is scraped (node.runtime.collectors).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Awaitable, Callable, Generator
from time import perf_counter
from types import TracebackType
from typing import TYPE_CHECKING, Any

import asyncpg

from registry.queries import query_name

# Upper bounds of the histogram buckets, seconds. A query takes a fraction of a
# millisecond on a local server; a waiting acquire can take the query deadline.
QUERY_BUCKETS_S = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    1.0,
    5.0,
)
ACQUIRE_BUCKETS_S = (0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0)
UNNAMED = "other"  # SQL that is no named query: a ping, a migration


class Timings:
    """Latency histograms by label, as plain counts (bucket i: at most ``bounds[i]``;
    the last, past every bound)."""

    __slots__ = ("bounds", "counts", "sums")

    def __init__(self, bounds: tuple[float, ...]):
        self.bounds = bounds
        self.counts: dict[str, list[int]] = {}
        self.sums: dict[str, float] = {}

    def observe(self, label: str, seconds: float) -> None:
        counts = self.counts.get(label)
        if counts is None:
            counts = self.counts[label] = [0] * (len(self.bounds) + 1)
            self.sums[label] = 0.0
        counts[bisect_left(self.bounds, seconds)] += 1
        self.sums[label] += seconds


class PoolStats:
    """One pool's counts: callers waiting in ``acquire`` now, how long acquiring took,
    and how long each named query took."""

    __slots__ = ("acquire", "queries", "waiting")

    def __init__(self) -> None:
        self.waiting = 0
        self.acquire = Timings(ACQUIRE_BUCKETS_S)
        self.queries = Timings(QUERY_BUCKETS_S)


if TYPE_CHECKING:  # generic in the type stubs only
    _Connection = asyncpg.Connection[asyncpg.Record]
    _Pool = asyncpg.Pool[asyncpg.Record]
else:
    _Connection = asyncpg.Connection
    _Pool = asyncpg.Pool


def _timed(method: str) -> Callable[..., Awaitable[Any]]:
    run = getattr(asyncpg.Connection, method)

    async def timed(self: TimedConnection, query: str, *args: Any, **kwargs: Any) -> Any:
        stats = self.stats
        if stats is None:  # a connection not made by an InstrumentedPool
            return await run(self, query, *args, **kwargs)
        started = perf_counter()
        try:
            return await run(self, query, *args, **kwargs)
        finally:
            stats.queries.observe(query_name(query) or UNNAMED, perf_counter() - started)

    timed.__name__ = method
    return timed


class TimedConnection(_Connection):
    """A connection whose queries are timed by name into its pool's ``PoolStats``.

    The overrides are made at run time only: their signatures are asyncpg's own (the
    stubs spell them as overloads), and the type checker keeps checking callers against
    those."""

    stats: PoolStats | None = None  # set by InstrumentedPool when it opens the connection

    if not TYPE_CHECKING:
        execute = _timed("execute")
        executemany = _timed("executemany")
        fetch = _timed("fetch")
        fetchmany = _timed("fetchmany")
        fetchrow = _timed("fetchrow")
        fetchval = _timed("fetchval")


class _TimedAcquire:
    """``pool.acquire()``'s context, timed: both ``async with`` and ``await`` forms."""

    __slots__ = ("_inner", "_stats")

    def __init__(self, inner: Any, stats: PoolStats):
        self._inner = inner
        self._stats = stats

    async def _timed(self, acquire: Awaitable[Any]) -> Any:
        stats = self._stats
        stats.waiting += 1
        started = perf_counter()
        try:
            return await acquire
        finally:
            stats.waiting -= 1
            stats.acquire.observe("", perf_counter() - started)

    async def __aenter__(self) -> Any:
        return await self._timed(self._inner.__aenter__())

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._inner.__aexit__(exc_type, exc, tb)

    def __await__(self) -> Generator[Any, None, Any]:
        return self._timed(self._inner).__await__()


class InstrumentedPool(_Pool):
    """An asyncpg pool that counts into ``stats`` (``PoolStats``): ``acquire`` timed and
    waiters counted (``Pool.fetch`` and friends acquire through it too), and its
    connections' queries timed when they are ``TimedConnection``s."""

    __slots__ = ("stats",)

    def __init__(self, dsn: str, *, connection_class: type[TimedConnection], **kwargs: Any):
        self.stats = PoolStats()
        stats = self.stats

        async def init(conn: Any) -> None:
            conn.stats = stats

        super().__init__(
            dsn,
            connection_class=connection_class,
            record_class=asyncpg.Record,
            init=init,
            setup=None,
            loop=None,
            # asyncpg.create_pool's defaults
            max_queries=50000,
            max_inactive_connection_lifetime=300.0,
            **kwargs,
        )

    if not TYPE_CHECKING:

        def acquire(self, *, timeout=None):
            return _TimedAcquire(super().acquire(timeout=timeout), self.stats)

    def in_use(self) -> int:
        """Connections handed out now."""
        return self.get_size() - self.get_idle_size()
