"""The invalidation listener: the registry's change feed (``registry.notify``) kept
connected, feeding ``RecordCache`` (when the node caches) and whoever follows prefix
changes (always).

The cache is coherent only while the feed is up. On connect (and every reconnect) it
LISTENs first and flushes the cache second, so no write can fall between the two; while
it is down the cache serves nothing fresh: each lookup reads the registry, and a row the
cache holds is answered (as stale) only if the registry cannot answer in time either,
which is what happens when the database is gone or hung, since the listener then fails
with it. Prefix changes are passed on as they come,
and after every reconnect (``on_prefixes(())``: re-read everything, some were missed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from node.resolution.cache.records import RecordCache
from registry.errors import DatabaseUnavailable
from registry.notify import Change, ChangeFeed

log = logging.getLogger("idnode.cache")

BACKOFF_FIRST_S = 0.1
BACKOFF_MAX_S = 5.0


class InvalidationListener:
    def __init__(
        self,
        dsn: str,
        cache: RecordCache | None,
        *,
        ping_interval_s: float | None = None,
        connect_timeout_s: float = 5.0,
        on_lag: Callable[[float], None] = lambda lag: None,
        on_prefixes: Callable[[tuple[str, ...]], None] = lambda keys: None,
        clock: Callable[[], float] = time.time,
    ):
        self.feed = ChangeFeed(dsn, connect_timeout_s=connect_timeout_s)
        self.cache = cache
        # A server that stopped answering (hung, not closed) is noticed by a ping left
        # unanswered: sent this often, and given as long as any query (the deadline).
        self.ping_interval_s = connect_timeout_s if ping_interval_s is None else ping_interval_s
        self.on_lag = on_lag
        self.on_prefixes = on_prefixes
        self.clock = clock
        self.connects = 0  # successful (re)connections
        self.notifications = 0
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._changed = asyncio.Condition()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def start(self) -> None:
        """Connect once (so a node is coherent when it reports ready), then keep the
        connection up in the background."""
        await self._connect()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._close()

    async def wait_connects(self, count: int) -> None:
        """Until the listener has connected ``count`` times in all (tests wait on a
        reconnection this way, never by sleeping)."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.connects >= count)

    async def _connect(self) -> None:
        await self.feed.connect(
            self._on_change, lambda problem: log.warning("%s; ignored", problem)
        )
        if self.cache is not None:
            self.cache.flush()  # after LISTEN: whatever changed before it is forgotten
            self.cache.set_coherent(True)
        self._connected.set()
        self.connects += 1
        async with self._changed:
            self._changed.notify_all()
        if self.connects > 1:
            log.info("invalidation listener reconnected; cache flushed")
            self.on_prefixes(())  # prefix changes may have been missed too

    def _close(self) -> None:
        self._connected.clear()
        if self.cache is not None:
            self.cache.set_coherent(False)
        self.feed.close()

    async def _run(self) -> None:
        backoff = BACKOFF_FIRST_S
        while True:
            if self.connected:
                await self.feed.lost(self.ping_interval_s)
                self._close()
                log.warning(
                    "invalidation listener lost its connection: cache answers stopped until it is back"
                )
            try:
                await self._connect()
                backoff = BACKOFF_FIRST_S
            except DatabaseUnavailable as exc:
                log.debug(
                    "invalidation listener: reconnect failed (%s); retrying in %.1f s", exc, backoff
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)

    def _on_change(self, change: Change) -> None:
        self.notifications += 1
        self.on_lag(max(0.0, self.clock() - change.sent_ms / 1000))
        if change.kind == "prefixes":
            self.on_prefixes(change.keys)
            return
        if self.cache is None:
            return
        invalidate = self.cache.invalidate
        for key in change.keys:
            invalidate(key)
