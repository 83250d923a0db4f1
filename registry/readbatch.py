"""Resolution reads, coalesced: the keys asked for within one turn of the event loop go
to PostgreSQL together, as one ``handle_key = ANY($1)`` query.

Under load a node misses on many identifiers at once (every request a new one, as a
crawler or a bulk import's checker makes them). One query per key costs a pool
round trip, a protocol exchange and a PostgreSQL statement each; one query for the
keys of a whole loop turn costs them once. At low load nothing waits: a key asked for
alone is read on the next loop turn, as it would have been.

Bounds. A batch holds at most ``max_batch`` keys, and at most ``max_inflight`` batches
are in flight (each on its own pool connection): keys asked for meanwhile wait for the
next batch, which grows with the load instead of the number of queries. A key asked
for twice before its batch leaves is read once.

Errors. A batch that fails fails every waiter in it with the same driver error (the
caller, ``Registry.get_handle_raw``, translates it: ``DatabaseUnavailable`` and
``QueryFailed`` as for a single read). A waiter that stops waiting (cancelled, or timed
out by ``asyncio.wait``) leaves the batch unaffected for the others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from registry.rows import RawRecord

# (handle_key, handle, values in wire form, version): one row of the batch query.
Row = Sequence[Any]
Fetch = Callable[[list[str]], Awaitable[Iterable[Row]]]

MAX_BATCH = 256
MAX_INFLIGHT = 4


@dataclass
class BatchStats:
    batches: int = 0  # queries made
    keys: int = 0  # distinct keys read by them
    waiters: int = 0  # get() calls answered by them (keys plus in-batch repeats)
    largest: int = 0  # most keys in one batch so far
    failed: int = 0  # batches whose query raised


class ReadBatcher:
    """Coalesces ``get(key)`` calls into batched reads through ``fetch``."""

    def __init__(
        self,
        fetch: Fetch,
        *,
        max_batch: int = MAX_BATCH,
        max_inflight: int = MAX_INFLIGHT,
    ):
        if max_batch < 1 or max_inflight < 1:
            raise ValueError("max_batch and max_inflight must be at least 1")
        self._fetch = fetch
        self.max_batch = max_batch
        self.max_inflight = max_inflight
        # key -> the futures of its waiters, in arrival order (oldest keys leave first).
        self._pending: dict[str, list[asyncio.Future[RawRecord | None]]] = {}
        self._scheduled = False
        self._inflight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.stats = BatchStats()

    @property
    def pending(self) -> int:
        """Keys waiting for a batch to take them."""
        return len(self._pending)

    @property
    def inflight(self) -> int:
        return self._inflight

    async def get(self, key: str) -> RawRecord | None:
        """The row of ``key`` as stored, or None; the driver's error if its batch failed."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # A registry outliving its loop (a CLI's asyncio.run per command): nothing
            # pending on the old one can be answered any more.
            self._loop, self._pending, self._scheduled, self._inflight = loop, {}, False, 0
        # One future per waiter: cancelling one waiter (awaiting a future cancels it)
        # must not cancel the read for the others.
        fut: asyncio.Future[RawRecord | None] = loop.create_future()
        waiters = self._pending.get(key)
        if waiters is None:
            self._pending[key] = [fut]
        else:
            waiters.append(fut)
        if not self._scheduled and self._inflight < self.max_inflight:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await fut

    def _flush(self) -> None:
        """Send what is pending, in batches, while batches may be in flight."""
        self._scheduled = False
        loop = asyncio.get_running_loop()
        while self._pending and self._inflight < self.max_inflight:
            batch: dict[str, list[asyncio.Future[RawRecord | None]]] = {}
            pending = self._pending
            for key in pending:
                batch[key] = pending[key]
                if len(batch) >= self.max_batch:
                    break
            if len(batch) == len(pending):
                self._pending = {}
            else:
                for key in batch:
                    del pending[key]
            # Keys whose every waiter has gone: not read at all.
            batch = {k: w for k, w in batch.items() if any(not f.done() for f in w)}
            if not batch:
                continue
            self._inflight += 1
            task = loop.create_task(self._run(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: dict[str, list[asyncio.Future[RawRecord | None]]]) -> None:
        stats = self.stats
        stats.batches += 1
        stats.keys += len(batch)
        stats.largest = max(stats.largest, len(batch))
        try:
            rows = await self._fetch(list(batch))
        except BaseException as exc:
            stats.failed += 1
            cancelled = isinstance(exc, asyncio.CancelledError)
            for waiters in batch.values():
                for fut in waiters:
                    if not fut.done():
                        if cancelled:
                            fut.cancel()
                        else:
                            fut.set_exception(exc)
            if cancelled or not isinstance(exc, Exception):
                raise
            return
        finally:
            self._inflight -= 1
            if self._pending and not self._scheduled:
                self._scheduled = True
                asyncio.get_running_loop().call_soon(self._flush)
        found: dict[str, RawRecord] = {}
        for row in rows:
            key, handle, wire, version = row[0], row[1], row[2], row[3]
            found[key] = RawRecord(handle, wire, version)
        for key, waiters in batch.items():
            record = found.get(key)
            for fut in waiters:
                if not fut.done():
                    stats.waiters += 1
                    fut.set_result(record)

    async def close(self) -> None:
        """Wait for the batches in flight (their waiters get their answers)."""
        if self._tasks:
            await asyncio.wait(list(self._tasks))
