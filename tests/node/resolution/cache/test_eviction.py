"""The cache's clock (second chance) against a real registry: without hits the oldest
entry goes first; entries hit between fills outlive any stream of one-off reads (what
LRU gives); replies leave with their entries, and the byte count with both."""

from __future__ import annotations

import random
from typing import Any

from protocol.handle import normalise
from tests.node.resolution.cache.conftest import Kept, url_value


async def _write(r: Any, names: list[str]) -> None:
    for name in names:
        await r.put(f"88.118.2/{name}", url_value(f"https://example.com/{name}"))


def _keys(names: list[str]) -> set[str]:
    return {normalise(f"88.118.2/{name}") for name in names}


async def test_without_hits_the_oldest_goes_first(rig: Any) -> None:
    r = await rig(max_entries=4)
    names = [f"F{i}" for i in range(10)]
    await _write(r, names)
    for i, name in enumerate(names):
        await r.url(f"88.118.2/{name}")
        assert set(r.cache.entries) == _keys(names[max(0, i - 3) : i + 1])
    assert r.cache.stats.evictions == 6


async def test_a_working_set_outlives_a_scan(rig: Any) -> None:
    """Four entries hit between one-off reads of 30 others, in a cache of 6: only the
    one-off ones are ever evicted (FIFO would evict the four once per 6 fills)."""
    r = await rig(max_entries=6)
    hot, scan = [f"H{i}" for i in range(4)], [f"S{i}" for i in range(30)]
    await _write(r, hot + scan)
    for name in hot:
        await r.url(f"88.118.2/{name}")
    for name in scan:
        await r.url(f"88.118.2/{name}")
        for h in hot:
            assert await r.url(f"88.118.2/{h}") == f"https://example.com/{h}"
    assert r.cache.stats.reads == len(hot) + len(scan)  # each hot one read once only
    assert r.cache.stats.evictions == len(scan) - 2
    assert _keys(hot) <= set(r.cache.entries)


async def test_a_refill_is_not_evicted_first(rig: Any) -> None:
    """An entry read again after it expired counts as used: its key, still ahead of
    the hand where it was first filled, does not make it the next victim."""
    r = await rig(max_entries=3, ttl_cap_s=60)
    names = ["R0", "R1", "R2", "R3"]
    await _write(r, names)
    for name in names[:3]:
        await r.url(f"88.118.2/{name}")
    await r.url("88.118.2/R3")  # the hand goes round: R0 out, R1 and R2 ahead of it
    r.clock.advance(61)
    await r.url("88.118.2/R1")  # expired: read again
    r.clock.advance(0.5)
    await r.url("88.118.2/R0")  # a fill: one of the others goes, not the refilled R1
    assert normalise("88.118.2/R1") in r.cache.entries
    assert r.cache.stats.reads == 6


async def test_bookkeeping_under_random_traffic(rig: Any) -> None:
    """Reads, replies kept by two fronts, invalidations, in a cache bounded by entries
    and bytes: every kept reply belongs to a live entry in the cache, the bounds hold,
    and once everything is invalidated no reply and no byte is left."""
    r = await rig(max_entries=5, max_bytes=5_000)
    names = [f"T{i}" for i in range(12)]
    await _write(r, names)
    native, http = r.cache.reply_map("native"), r.cache.reply_map("http")
    rng = random.Random(15)
    for step in range(600):
        name = rng.choice(names)
        key = normalise(f"88.118.2/{name}")
        action = rng.random()
        if action < 0.15:
            r.cache.invalidate(key)
        else:
            found = await r.cache.get(key)
            if found.entry is not None and action < 0.6:
                front = native if rng.random() < 0.7 else http
                shape = f"{name}/{rng.randrange(3)}".encode()
                r.cache.add_reply(front, shape, found.entry, Kept(rng.randrange(10, 400)))
        live = {id(e) for e in r.cache.entries.values()}
        for front in (native, http):
            for shape, kept in front.items():
                assert kept.entry.live and id(kept.entry) in live, (step, shape)
                assert shape in kept.entry.shapes()
        assert len(r.cache.entries) <= 5 and r.cache.bytes <= 5_000
    assert r.cache.stats.evictions > 0 and native and http
    for name in names:
        r.cache.invalidate(normalise(f"88.118.2/{name}"))
    assert not r.cache.entries and not native and not http
    assert r.cache.bytes == 0
