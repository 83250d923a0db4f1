"""A migrated registry on this test's database, a RecordCache over it on a clock the
test moves, and its invalidation listener connected."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import asyncpg
import pytest

from node.resolution.cache.listener import InvalidationListener
from node.resolution.cache.records import CachePolicy, RecordCache
from protocol.creditcode import check_character
from protocol.handle import parse_handle
from protocol.values import HandleValue
from registry.migrate import migrate
from registry.store import Registry
from tests.node.http_support import SteppedClock
from tests.node.wait_support import until

T0 = datetime(2026, 11, 1, 8, 0, 0, tzinfo=UTC)
MILL = "91320509MA1MXLL00" + check_character("91320509MA1MXLL00")
WALL = 1_800_000_000.0  # the wall clock the cache sees (absolute TTLs)

MakeCache = Callable[..., "CacheRig"]


def url_value(url: str, *, ttl: int = 86400, **kw: object) -> HandleValue:
    return HandleValue(1, "URL", url.encode(), ttl=ttl, **kw)  # type: ignore[arg-type]


class Kept:
    """A front's reply of ``size`` bytes, for the cache's own bookkeeping tests."""

    def __init__(self, size: int):
        self.size = size
        self.entry: object = None

    def nbytes(self) -> int:
        return self.size


class CacheRig:
    def __init__(
        self,
        registry: Registry,
        cache: RecordCache,
        listener: InvalidationListener,
        clock: SteppedClock,
    ):
        self.registry, self.cache, self.listener, self.clock = registry, cache, listener, clock

    async def put(self, handle: str, *values: HandleValue) -> None:
        """Write and wait until the listener has heard of it: NOTIFY arrives after the
        commit, so a read made before that could be invalidated by this very write."""
        heard = self.listener.notifications
        await self.registry.put_handle(parse_handle(handle), values, actor="test", now=T0)
        await until(lambda: self.listener.notifications > heard)

    async def url(self, handle: str) -> str | None:
        """The URL as the cache answers it (None: not found)."""
        found = await self.cache.get(parse_handle(handle).key)
        return found.decoded()[0].data.decode() if found.raw is not None else None


@pytest.fixture
async def registry(database_url: str) -> AsyncIterator[Registry]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=6)
    assert pool is not None
    async with pool.acquire() as conn:
        await migrate(conn)
    reg = Registry(pool)
    await reg.add_enterprise("盛泽示例丝绸有限公司", MILL, "ops@example.com", T0)
    await reg.add_prefix("88.118.2", MILL, T0)
    try:
        yield reg
    finally:
        await pool.close()


@pytest.fixture
async def rig(registry: Registry, database_url: str) -> AsyncIterator[Callable[..., object]]:
    """``await rig(**policy)``: a cache with that policy and its listener, connected."""
    made: list[InvalidationListener] = []

    async def make(**policy: object) -> CacheRig:
        clock = SteppedClock()
        cache = RecordCache(
            registry.get_handle_raw, CachePolicy(**policy), monotonic=clock, clock=lambda: WALL
        )  # type: ignore[arg-type]
        listener = InvalidationListener(database_url, cache, ping_interval_s=1.0)
        await listener.start()
        made.append(listener)
        return CacheRig(registry, cache, listener, clock)

    try:
        yield make
    finally:
        for listener in made:
            await listener.stop()
