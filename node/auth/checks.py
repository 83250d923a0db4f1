"""The worker threads every costly credential check runs in (PBKDF2, signature
verification), shared by the HTTP and native fronts.

``workers`` checks run at once, off the event loop; at most ``queue_max`` more wait
(``auth_checks_queue_max``), and a check that finds the queue full is refused at once
(``PoolBusy``: HTTP 503, native RC 3) rather than left to delay everyone behind it.
Waiting checks are served round-robin across their sources (client networks), so a
flood from one source gets one turn in each round like everybody else: a real login
waits for at most one check per other waiting source, not for the whole flood. One
source may also hold at most ``per_source_max`` waiting places.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

# PBKDF2 and OpenSSL release the GIL: a few threads use a few cores, and leave the rest
# of the machine (and the default executor) to everything else.
DEFAULT_WORKERS = 4


class PoolBusy(Exception):
    """Too many checks are waiting already."""


class CheckPool:
    def __init__(
        self, *, queue_max: int, workers: int = DEFAULT_WORKERS, per_source_max: int | None = None
    ):
        if workers < 1 or queue_max < 1:
            raise ValueError("workers and queue_max must be >= 1")
        self.workers = workers
        self.queue_max = queue_max
        self.per_source_max = per_source_max or max(1, queue_max // 4)
        self.running = 0
        self.waiting = 0
        # Source -> its waiters, oldest first; dict order is the round (served from the
        # front, sent to the back while it still has waiters).
        self._queues: dict[str, deque[asyncio.Future[None]]] = {}

    async def run(self, source: str, check: Callable[..., T], *args: object) -> T:
        """``check(*args)`` in a worker thread once a slot is free; PoolBusy when the
        queue is full (or ``source`` holds its share of it)."""
        await self._slot(source)
        try:
            return await asyncio.to_thread(check, *args)
        finally:
            self._release()

    async def _slot(self, source: str) -> None:
        if self.running < self.workers and not self.waiting:
            self.running += 1
            return
        queue = self._queues.get(source)
        if self.waiting >= self.queue_max or (queue and len(queue) >= self.per_source_max):
            raise PoolBusy(
                f"{self.waiting} authentication checks are waiting (auth_checks_queue_max="
                f"{self.queue_max})"
            )
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if queue is None:
            queue = self._queues[source] = deque()
        queue.append(turn)
        self.waiting += 1
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._release()  # given a slot just as we were cancelled: pass it on
            else:
                self._forget(source, turn)
            raise

    def _forget(self, source: str, turn: asyncio.Future[None]) -> None:
        queue = self._queues.get(source)
        if queue is not None and turn in queue:
            queue.remove(turn)
            self.waiting -= 1
            if not queue:
                del self._queues[source]

    def _release(self) -> None:
        """A slot is free: the next source in the round gets it (the slot passes on, so
        ``running`` stays), or it goes back to the pool."""
        while self._queues:
            source = next(iter(self._queues))
            queue = self._queues.pop(source)
            turn = queue.popleft()
            self.waiting -= 1
            if queue:
                self._queues[source] = queue  # to the back of the round
            if not turn.done():
                turn.set_result(None)
                return
        self.running -= 1
