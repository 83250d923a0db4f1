"""RecordCache policy against a real registry: TTLs, negative caching, LRU bounds,
single-flight, reads racing writes."""

from __future__ import annotations

import asyncio
from typing import Any

from node.resolution.cache.records import ENTRY_OVERHEAD
from protocol.codes import TTLType
from protocol.handle import normalise
from tests.node.resolution.cache.conftest import WALL, Kept, url_value
from tests.node.wait_support import until

KEY = normalise("88.118.2/ROLL-1")


async def test_hit_after_miss_and_ttl_of_the_values(rig: Any) -> None:
    r = await rig(ttl_cap_s=600)
    await r.put("88.118.2/ROLL-1", url_value("https://a", ttl=30))
    assert await r.url("88.118.2/roll-1") == "https://a"
    assert await r.url("88.118.2/ROLL-1") == "https://a"
    assert (r.cache.stats.reads, r.cache.stats.hits) == (1, 1)
    r.clock.advance(29)
    await r.url("88.118.2/ROLL-1")
    assert r.cache.stats.reads == 1
    r.clock.advance(2)  # past the value's 30 s TTL
    await r.url("88.118.2/ROLL-1")
    assert r.cache.stats.reads == 2


async def test_ttl_cap_and_absolute_ttl(rig: Any) -> None:
    r = await rig(ttl_cap_s=100)
    await r.put("88.118.2/LONG", url_value("https://long", ttl=86400))
    await r.put(
        "88.118.2/ABS", url_value("https://abs", ttl=int(WALL) + 20, ttl_type=TTLType.ABSOLUTE)
    )
    await r.url("88.118.2/LONG")
    await r.url("88.118.2/ABS")
    r.clock.advance(21)  # the absolute TTL has passed, the cap has not
    await r.url("88.118.2/LONG")
    await r.url("88.118.2/ABS")
    assert r.cache.stats.reads == 3
    r.clock.advance(80)  # past the cap
    await r.url("88.118.2/LONG")
    assert r.cache.stats.reads == 4


async def test_ttl_zero_is_never_cached(rig: Any) -> None:
    r = await rig()
    await r.put("88.118.2/VOLATILE", url_value("https://v", ttl=0))
    await r.url("88.118.2/VOLATILE")
    await r.url("88.118.2/VOLATILE")
    assert r.cache.stats.reads == 2 and not r.cache.entries


async def test_not_found_is_cached_briefly_and_dropped_by_a_creation(rig: Any) -> None:
    r = await rig(negative_ttl_s=5)
    assert await r.url("88.118.2/LATER") is None
    assert await r.url("88.118.2/LATER") is None
    assert (r.cache.stats.reads, r.cache.stats.negative_hits) == (1, 1)
    created = r.cache.invalidated(normalise("88.118.2/LATER"))
    await r.put("88.118.2/LATER", url_value("https://now"))  # committed, then NOTIFY
    await asyncio.wait_for(created, 5)
    assert await r.url("88.118.2/LATER") == "https://now"
    r.clock.advance(6)
    assert await r.url("88.118.2/GONE") is None
    r.clock.advance(6)  # past the negative TTL
    await r.url("88.118.2/GONE")
    assert r.cache.stats.reads == 4


async def test_a_write_from_anywhere_invalidates(rig: Any) -> None:
    """Plain SQL on another connection (not a node's write path) notifies too."""
    r = await rig()
    await r.put("88.118.2/ROLL-1", url_value("https://old"))
    assert await r.url("88.118.2/ROLL-1") == "https://old"
    changed = r.cache.invalidated(KEY)
    async with r.registry.pool.acquire() as conn:
        await conn.execute("DELETE FROM handles WHERE handle_key = $1", KEY)
    await asyncio.wait_for(changed, 5)
    assert await r.url("88.118.2/ROLL-1") is None


async def test_bulk_write_notifies_every_key_in_few_notifications(rig: Any) -> None:
    r = await rig()
    keys = [f"88.118.2/BULK-{i:05d}" for i in range(1500)]
    for k in keys[:3]:
        await r.put(k, url_value("https://one"))
    for k in keys[:3]:
        await r.url(k)
    last = r.cache.invalidated(normalise(keys[-1]))
    before = r.listener.notifications
    async with r.registry.pool.acquire() as conn:
        # One statement writing 1500 rows (a bulk import): keys travel in batches.
        await conn.execute(
            """INSERT INTO handles (handle_key, handle, prefix_key, "values", created_at, updated_at)
               SELECT upper(h), h, '88.118.2', '\\x00000000'::bytea, now(), now()
               FROM unnest($1::text[]) AS h ON CONFLICT (handle_key) DO UPDATE SET version = handles.version + 1""",
            keys,
        )
    await asyncio.wait_for(last, 5)
    assert not r.cache.entries  # the three cached ones were in the batch
    sent = r.listener.notifications - before
    assert 2 <= sent <= 10, sent  # ~30 bytes a key, ~7000 bytes a payload


async def test_lru_eviction_by_entries(rig: Any) -> None:
    r = await rig(max_entries=3)
    for i in range(4):
        await r.put(f"88.118.2/E{i}", url_value(f"https://{i}"))
    for i in range(3):
        await r.url(f"88.118.2/E{i}")
    await r.url("88.118.2/E0")  # E0 is now the most recently used; E1 the least
    await r.url("88.118.2/E3")
    # E0 was used since the clock's hand last passed it: E1 went instead.
    assert set(r.cache.entries) == {normalise(f"88.118.2/E{i}") for i in (0, 2, 3)}
    assert r.cache.stats.evictions == 1


async def test_eviction_by_bytes_counts_replies_too(rig: Any) -> None:
    per_entry = ENTRY_OVERHEAD + 2 * len(normalise("88.118.2/B0")) + len("88.118.2/B0")
    r = await rig(max_bytes=3 * (per_entry + 200))
    for i in range(5):
        await r.put(f"88.118.2/B{i}", url_value("https://x" * 10))
    for i in range(5):
        found = await r.cache.get(normalise(f"88.118.2/B{i}"))
        assert r.cache.bytes <= r.cache.policy.max_bytes
    kept = len(r.cache.entries)
    assert 1 <= kept < 5 and r.cache.stats.evictions == 5 - kept
    # A large reply kept against the newest entry pushes older entries out.
    replies = r.cache.reply_map("test")
    assert found.entry is not None
    r.cache.add_reply(replies, b"shape", found.entry, Kept(r.cache.policy.max_bytes // 2))
    assert r.cache.bytes <= r.cache.policy.max_bytes and len(r.cache.entries) < kept
    assert replies and next(iter(replies.values())).entry is found.entry


async def test_invalidation_drops_the_fronts_replies(rig: Any) -> None:
    r = await rig()
    await r.put("88.118.2/ROLL-1", url_value("https://a"))
    found = await r.cache.get(KEY)
    assert found.entry is not None
    replies = r.cache.reply_map("native")
    assert r.cache.add_reply(replies, b"s1", found.entry, Kept(5))
    bytes_with_reply = r.cache.bytes
    r.cache.invalidate(KEY)
    assert not replies and r.cache.bytes == 0 < bytes_with_reply
    # A reply built from the dropped entry is not kept afterwards either.
    assert not r.cache.add_reply(replies, b"s2", found.entry, Kept(4)) and not replies


async def test_single_flight(rig: Any) -> None:
    """Fifty concurrent misses for one handle make one registry read."""
    r = await rig()
    await r.put("88.118.2/ROLL-1", url_value("https://a"))
    async with r.registry.pool.acquire() as locker:
        tx = locker.transaction()
        await tx.start()
        await locker.execute("LOCK TABLE handles IN ACCESS EXCLUSIVE MODE")  # the read waits
        tasks = [asyncio.create_task(r.url("88.118.2/ROLL-1")) for _ in range(50)]
        await until(lambda: r.cache.stats.joins == 49)
        await tx.rollback()
    assert await asyncio.gather(*tasks) == ["https://a"] * 50
    assert (r.cache.stats.reads, r.cache.stats.joins) == (1, 49)


async def test_one_caller_giving_up_does_not_cancel_the_read(rig: Any) -> None:
    r = await rig()
    await r.put("88.118.2/ROLL-1", url_value("https://a"))
    async with r.registry.pool.acquire() as locker:
        tx = locker.transaction()
        await tx.start()
        await locker.execute("LOCK TABLE handles IN ACCESS EXCLUSIVE MODE")
        impatient = asyncio.create_task(r.url("88.118.2/ROLL-1"))
        patient = asyncio.create_task(r.url("88.118.2/ROLL-1"))
        await until(lambda: r.cache.stats.joins == 1)
        impatient.cancel()
        await tx.rollback()
    assert await patient == "https://a"
    assert impatient.cancelled()


async def test_a_read_racing_a_write_is_not_stored(rig: Any) -> None:
    """The read started before the write committed: its (old) row is answered to the
    callers waiting on it but never cached over the invalidation."""
    r = await rig()
    await r.put("88.118.2/ROLL-1", url_value("https://old"))
    async with r.registry.pool.acquire() as locker:
        tx = locker.transaction()
        await tx.start()
        await locker.execute("LOCK TABLE handles IN ACCESS EXCLUSIVE MODE")
        reading = asyncio.create_task(r.url("88.118.2/ROLL-1"))
        await until(lambda: KEY in r.cache._flights)
        r.cache.invalidate(KEY)  # the notification of a write that committed meanwhile
        await tx.rollback()
    assert await reading == "https://old"
    assert KEY not in r.cache.entries
    await r.url("88.118.2/ROLL-1")
    assert r.cache.stats.reads == 2
