"""The client timeout (RFC 8767) against a real registry whose reads hang: a lock held
on the handles table stands in for a server that stopped answering, and releasing it
for the server answering again.

A caller waits for a read at most its timeout, then gets a stale copy or ``NoAnswer``;
the read goes on once per handle, refreshing the entry; a registry found down answers
stale at once, and is read one read at a time until it answers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from node.resolution.cache.records import NoAnswer
from node.resolution.outcomes import Found
from node.resolution.prefixes import ServedPrefixes
from node.resolution.resolver import LATE_READS_MAX, Resolver
from protocol.handle import normalise, parse_handle
from registry.errors import DatabaseUnavailable
from registry.store import Registry
from tests.node.resolution.cache.conftest import T0, url_value
from tests.node.wait_support import until

ROLL = [f"88.118.2/ROLL-{n}" for n in range(4)]
KEY = [normalise(h) for h in ROLL]


@asynccontextmanager
async def hung(registry: Registry) -> AsyncIterator[None]:
    """Every read of a handle waits until the block ends."""
    async with registry.pool.acquire() as locker:
        tx = locker.transaction()
        await tx.start()
        await locker.execute("LOCK TABLE handles IN ACCESS EXCLUSIVE MODE")
        try:
            yield
        finally:
            await tx.rollback()


async def _expired(r: Any, *handles: str) -> None:
    """Cached, then past their 30 s TTL: stale candidates."""
    for handle in handles:
        await r.put(handle, url_value(f"https://{handle}", ttl=30))
        assert await r.url(handle) == f"https://{handle}"
    r.clock.advance(31)


async def test_stale_after_the_timeout_and_one_refresh_per_handle(
    rig: Any, caplog: pytest.LogCaptureFixture
) -> None:
    r = await rig()
    await _expired(r, ROLL[0])
    reads = r.cache.stats.reads
    caplog.set_level(logging.INFO, logger="idnode.cache")
    async with hung(r.registry):
        found = await asyncio.gather(*(r.cache.get(KEY[0], 0.2) for _ in range(20)))
        assert all(f.stale and f.decoded()[0].data == b"https://" + ROLL[0].encode() for f in found)
        assert r.cache.stats.reads == reads + 1  # one read, however many callers
        assert "registry unreachable (no answer within 0.2 s)" in caplog.text
        # Found down: stale at once, even for a caller that would wait as long as it
        # takes (it would wait for the lock this test holds: the wait_for would fail).
        assert (await asyncio.wait_for(r.cache.get(KEY[0]), 10)).stale
        assert r.cache.stats.reads == reads + 1
    # The read went on without its callers, and refreshed the entry when it answered.
    await until(lambda: not r.cache._flights)
    fresh = await r.cache.get(KEY[0], 0.2)
    assert not fresh.stale and fresh.entry is not None
    assert r.cache.stats.reads == reads + 1
    assert "registry reachable again" in caplog.text


async def test_a_miss_waits_the_timeout_at_most_then_one_read_at_a_time(rig: Any) -> None:
    r = await rig()
    for handle in ROLL[1:3]:
        await r.put(handle, url_value(f"https://{handle}"))
    loop = asyncio.get_running_loop()
    async with hung(r.registry):
        started = loop.time()
        with pytest.raises(NoAnswer) as waited:
            await r.cache.get(KEY[1], 0.2)
        assert waited.value.waited_s == 0.2 and not waited.value.foreign
        assert 0.2 <= loop.time() - started < 5
        # Down, and its read still under way: another miss is told so at once, and
        # leaves no second read waiting on the registry.
        reads = r.cache.stats.reads
        with pytest.raises(NoAnswer) as at_once:
            await asyncio.wait_for(r.cache.get(KEY[2], 30), 10)
        assert at_once.value.waited_s == 0 and r.cache.stats.reads == reads
    # The registry answers again: the read that was late says so, and all is read again.
    await until(lambda: not r.cache._flights)
    assert await r.url(ROLL[1]) == f"https://{ROLL[1]}"
    assert await r.url(ROLL[2]) == f"https://{ROLL[2]}"


async def test_callers_of_other_handles_stop_waiting_once_it_is_found_down(rig: Any) -> None:
    """One caller's timeout finds the registry down: a caller waiting with a longer one
    on another handle's read answers stale then, not at its own timeout."""
    r = await rig()
    await _expired(r, ROLL[0], ROLL[1])
    async with hung(r.registry):
        patient = asyncio.create_task(r.cache.get(KEY[1], 60))
        await until(lambda: KEY[1] in r.cache._flights)
        assert (await r.cache.get(KEY[0], 0.2)).stale
        assert (await asyncio.wait_for(patient, 10)).stale


async def test_the_listener_connecting_ends_serve_stale(rig: Any) -> None:
    r = await rig()
    await _expired(r, ROLL[0])
    async with hung(r.registry):
        assert (await r.cache.get(KEY[0], 0.1)).stale
        r.cache.set_coherent(True)  # as the listener does once it reached the registry
        joins = r.cache.stats.joins
        # Waited on again (it joins the read under way), not answered stale at once.
        assert (await r.cache.get(KEY[0], 0.1)).stale
        assert r.cache.stats.joins == joins + 1


async def test_uncached_reads_are_bounded_too(registry: Registry) -> None:
    """Without the cache (or ``fresh``, the REST API's auth=true), a read is waited on
    at most the client timeout, and past LATE_READS_MAX reads left running the next is
    refused at once."""
    resolver = Resolver(registry, ServedPrefixes(("88.118.2",)), client_timeout_s=0.1)
    await resolver.refresh_prefixes()
    await registry.put_handle(parse_handle(ROLL[0]), (url_value("https://a"),), actor="t", now=T0)
    loop = asyncio.get_running_loop()
    async with hung(registry):
        for _ in range(LATE_READS_MAX):
            with pytest.raises(DatabaseUnavailable, match=r"no answer within 0\.1 s"):
                await resolver.resolve(ROLL[0])
        started = loop.time()
        with pytest.raises(DatabaseUnavailable, match="not answering"):
            await resolver.resolve(ROLL[0])
        assert loop.time() - started < 0.1
    await until(lambda: resolver._late_reads == 0)
    found = await resolver.resolve(ROLL[0])
    assert isinstance(found, Found) and found.values[0].data == b"https://a"
