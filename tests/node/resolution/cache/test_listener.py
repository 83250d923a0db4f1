"""The invalidation listener: lost notifications are made up for by a flush on
reconnect, and nothing is served fresh while it is down."""

from __future__ import annotations

import asyncio
from typing import Any

from protocol.handle import normalise
from tests.node.resolution.cache.conftest import Kept, url_value

KEY = normalise("88.118.2/ROLL-1")


async def _silent_update(r: Any, url: str) -> None:
    """Change the row without its notification: the trigger off inside the transaction
    (a notification lost on the way, as when the listener's connection drops)."""
    wire = url_value(url)
    from protocol.valuecodec import encode_values

    async with r.registry.pool.acquire() as conn, conn.transaction():
        await conn.execute("ALTER TABLE handles DISABLE TRIGGER handles_notify_update")
        await conn.execute(
            'UPDATE handles SET "values" = $2, version = version + 1 WHERE handle_key = $1',
            KEY,
            encode_values((wire,)),
        )
        await conn.execute("ALTER TABLE handles ENABLE TRIGGER handles_notify_update")


async def test_reconnect_flushes_what_notifications_missed(rig: Any) -> None:
    r = await rig()
    await r.put("88.118.2/ROLL-1", url_value("https://old"))
    assert await r.url("88.118.2/ROLL-1") == "https://old"
    await _silent_update(r, "https://new")
    assert await r.url("88.118.2/ROLL-1") == "https://old"  # the cache never heard of it
    assert r.listener.connects == 1
    async with r.registry.pool.acquire() as conn:
        assert r.listener.feed.server_pid() is not None
        await conn.execute("SELECT pg_terminate_backend($1)", r.listener.feed.server_pid())
    await asyncio.wait_for(r.listener.wait_connects(2), 10)
    assert r.cache.coherent and r.cache.stats.flushes == 2  # the first connect flushed too
    assert await r.url("88.118.2/ROLL-1") == "https://new"


async def test_nothing_fresh_while_the_listener_is_down(rig: Any) -> None:
    r = await rig()
    await r.put("88.118.2/ROLL-1", url_value("https://a"))
    await r.url("88.118.2/ROLL-1")
    replies = r.cache.reply_map("native")
    found = await r.cache.get(KEY)
    assert found.entry is not None and r.cache.add_reply(replies, b"shape", found.entry, Kept(1))
    await r.listener.stop()
    assert not r.cache.coherent and not replies  # the fronts stop hitting at once
    reads = r.cache.stats.reads
    for _ in range(3):
        assert await r.url("88.118.2/ROLL-1") == "https://a"
    assert r.cache.stats.reads == reads + 3  # every lookup asked the registry


async def test_listener_reports_the_lag_from_the_payload(rig: Any, database_url: str) -> None:
    from node.resolution.cache.listener import InvalidationListener
    from node.resolution.cache.records import CachePolicy, RecordCache

    r = await rig()
    lags: list[float] = []
    cache = RecordCache(r.registry.get_handle_raw, CachePolicy())
    # A wall clock 2 s ahead of the database's: the lag is measured from the payload's stamp.
    import time

    listener = InvalidationListener(
        database_url, cache, on_lag=lags.append, clock=lambda: time.time() + 2.0
    )
    await listener.start()
    try:
        heard = cache.invalidated(KEY)
        await r.put("88.118.2/ROLL-1", url_value("https://a"))
        await asyncio.wait_for(heard, 5)
        assert len(lags) == 1 and 1.9 < lags[0] < 10
    finally:
        await listener.stop()
