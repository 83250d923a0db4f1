"""Group commit: concurrent single writes share one transaction.

Each write is checked, authorized and signed on its own (``WriteService.put``); only
the commit is shared. The first write to arrive is committed at once, alone; writes
that arrive while a commit is in flight wait for it and go together in the next one,
up to ``max_group`` (settings ``write_group_max``). No timer: an idle node commits
each write immediately, and 64 concurrent MES clients share a few commits instead of
queuing for one fsync each. Each change succeeds or fails on its own
(``Registry.apply_changes`` with ``atomic=False``), and every waiter is answered only
after the transaction holding its change has committed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

from registry.batch import Change, Outcome
from registry.errors import DatabaseUnavailable

Apply = Callable[[Sequence[Change], datetime], Awaitable[list[Outcome]]]


class GroupCommitter:
    def __init__(self, apply: Apply, max_group: int):
        self.apply = apply
        self.max_group = max(1, max_group)
        self._waiting: list[tuple[Change, datetime, asyncio.Future[Outcome]]] = []
        self._running: asyncio.Task[None] | None = None
        self.commits = 0  # transactions (a group's size is changes / commits)
        self.changes = 0

    async def commit(self, change: Change, now: datetime) -> Outcome:
        fut: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._waiting.append((change, now, fut))
        if self._running is None or self._running.done():
            self._running = asyncio.create_task(self._drain())
        # Shielded: a caller that gives up does not cancel a commit others share;
        # its own change may still commit (as any write whose reply was lost).
        return await asyncio.shield(fut)

    async def _drain(self) -> None:
        group: list[tuple[Change, datetime, asyncio.Future[Outcome]]] = []
        try:
            while self._waiting:
                group = self._waiting[: self.max_group]
                del self._waiting[: self.max_group]
                # One clock for the group: the latest, so no value is stamped before
                # the moment its own write arrived.
                now = max(t for _, t, _ in group)
                try:
                    outcomes = await self.apply([c for c, _, _ in group], now)
                except Exception as exc:  # e.g. the registry is unreachable: all fail
                    for _, _, fut in group:
                        if not fut.done():
                            fut.set_exception(exc)
                    continue
                self.commits += 1
                self.changes += len(group)
                for (_, _, fut), outcome in zip(group, outcomes, strict=True):
                    if not fut.done():
                        fut.set_result(outcome)
        finally:  # cancelled (the node is stopping): nobody is left waiting forever
            for _, _, fut in group + self._waiting:
                if not fut.done():
                    fut.set_exception(
                        DatabaseUnavailable("the node stopped before the write was confirmed")
                    )
