"""The invalidation listener: a dedicated PostgreSQL connection LISTENing on the
channel the ``handles`` triggers notify (migration 0003), feeding ``RecordCache``.

The cache is coherent only while this connection is up. On connect (and every
reconnect) it LISTENs first and flushes the cache second, so no write can fall between
the two; while it is down the cache serves nothing fresh. A connection that dies
without a FIN (a network partition) is found by a periodic ping.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import asyncpg

from .records import RecordCache

log = logging.getLogger("idnode.cache")

CHANNEL = "idnode_handles"
BACKOFF_FIRST_S = 0.1
BACKOFF_MAX_S = 5.0


class InvalidationListener:
    def __init__(
        self,
        dsn: str,
        cache: RecordCache,
        *,
        ping_interval_s: float = 5.0,
        connect_timeout_s: float = 5.0,
        on_lag: Callable[[float], None] = lambda lag: None,
        clock: Callable[[], float] = time.time,
    ):
        self.dsn = dsn
        self.cache = cache
        self.ping_interval_s = ping_interval_s
        self.connect_timeout_s = connect_timeout_s
        self.on_lag = on_lag
        self.clock = clock
        self.connects = 0  # successful (re)connections
        self.notifications = 0
        self._conn: asyncpg.Connection | None = None
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
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        await self._close()

    async def wait_connects(self, count: int) -> None:
        """Until the listener has connected ``count`` times in all (tests wait on a
        reconnection this way, never by sleeping)."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.connects >= count)

    async def _connect(self) -> None:
        conn = await asyncpg.connect(self.dsn, timeout=self.connect_timeout_s)
        try:
            await conn.add_listener(CHANNEL, self._on_notify)
        except BaseException:
            conn.terminate()
            raise
        self._conn = conn
        self.cache.flush()  # after LISTEN: whatever changed before it is forgotten
        self.cache.set_coherent(True)
        self._connected.set()
        self.connects += 1
        async with self._changed:
            self._changed.notify_all()
        if self.connects > 1:
            log.info("invalidation listener reconnected; cache flushed")

    async def _close(self) -> None:
        self._connected.clear()
        self.cache.set_coherent(False)
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            conn.terminate()

    async def _run(self) -> None:
        backoff = BACKOFF_FIRST_S
        while True:
            if self._conn is not None:
                await self._watch(self._conn)
                await self._close()
                log.warning("invalidation listener lost its connection: cache answers stopped until it is back")
            try:
                await self._connect()
                backoff = BACKOFF_FIRST_S
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.debug("invalidation listener: reconnect failed (%s); retrying in %.1f s", type(exc).__name__, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def _watch(self, conn: asyncpg.Connection) -> None:
        """Return when the connection is gone: closed by the server, or not answering."""
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        while not lost.is_set() and not conn.is_closed():
            try:
                await asyncio.wait_for(lost.wait(), self.ping_interval_s)
                return
            except TimeoutError:
                pass
            try:
                await conn.fetchval("SELECT 1", timeout=self.ping_interval_s)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
                return

    def _on_notify(self, conn: object, pid: int, channel: str, payload: str) -> None:
        lines = payload.split("\n")
        self.notifications += 1
        try:
            self.on_lag(max(0.0, self.clock() - int(lines[0]) / 1000))
        except ValueError:
            log.warning("unexpected payload on %s ignored", CHANNEL)
            return
        invalidate = self.cache.invalidate
        for key in lines[1:]:
            invalidate(key)
