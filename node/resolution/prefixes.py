"""Which prefixes this node answers for, kept current while it runs.

Configured prefixes (``prefixes`` setting) and prefixes a server admin homed (native
HOME_NA) are served as such; registry prefixes are served while enabled. Every change to the ``prefixes`` table reaches every node through
the registry's change feed (``registry.notify``), and ``PrefixRefresher`` re-reads the
table: a prefix added or enabled by any node, the CLI or plain SQL is served without a
restart, and one disabled stops being served.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable

from protocol.handle import is_under, normalise
from registry.rows import Prefix, PrefixStatus

log = logging.getLogger("idnode.prefixes")

# Answers of ``serves`` remembered between updates: every resolution asks, nearly always
# about the same few prefixes, and the answer walks every served prefix. Bounded, since
# clients choose what they ask about.
SERVES_MEMO_MAX = 4096


class ServedPrefixes:
    """Configured prefixes plus the registry's, with their lifecycle status."""

    def __init__(self, configured: Iterable[str] = ()):
        self._configured = tuple(configured)
        self._homed: tuple[str, ...] = ()  # by HOME_NA (registry, migration 0005)
        self._registered: dict[str, Prefix] = {}
        self._enabled: tuple[str, ...] = ()
        self.generation = 0  # bumped at every update: waiters compare it
        self._updated = asyncio.Condition()
        self._serves: dict[str, bool] = {}

    async def update(self, rows: Iterable[Prefix], homed: Iterable[str] = ()) -> None:
        self._homed = tuple(homed)
        self._registered = {r.prefix_key: r for r in rows}
        self._enabled = tuple(
            r.prefix for r in self._registered.values() if r.status == PrefixStatus.ENABLED
        )
        self._serves = {}
        self.generation += 1
        async with self._updated:
            self._updated.notify_all()

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        """Until ``condition()`` holds after some update (tests, and callers that must
        see a change they made through another node)."""
        async with self._updated:
            await self._updated.wait_for(condition)

    def all(self) -> tuple[str, ...]:
        return self._configured + self._homed + self._enabled

    def homed(self) -> tuple[str, ...]:
        """Configured and homed prefixes: the ones LIST_HOMED_NAS names."""
        return self._configured + self._homed

    def serves(self, prefix: str) -> bool:
        """Configured, or under one; registered and enabled, or under one. A registered
        prefix that is not enabled is not served, whatever its parent."""
        served = self._serves.get(prefix)
        if served is None:
            served = self._serves_now(prefix)
            if len(self._serves) >= SERVES_MEMO_MAX:
                self._serves = {}
            self._serves[prefix] = served
        return served

    def _serves_now(self, prefix: str) -> bool:
        key = normalise(prefix)
        if any(normalise(p) == key for p in self.homed()):
            return True
        row = self._registered.get(key)
        if row is not None and row.status != PrefixStatus.ENABLED:
            return False
        return any(is_under(prefix, p) for p in self.all())

    def why_not_served(self, prefix: str) -> str:
        """What to tell a client asking about a prefix this node does not serve."""
        status = self.status(prefix)
        if status is not None and status != PrefixStatus.ENABLED:
            return f"prefix {prefix} is {status.label} (status {int(status)}), not enabled"
        return f"this server is not responsible for prefix {prefix}"

    def status(self, prefix: str) -> PrefixStatus | None:
        """The registry status of exactly this prefix, None when not registered."""
        row = self._registered.get(normalise(prefix))
        return row.status if row is not None else None

    def exact(self, prefix: str) -> tuple[bool, bool]:
        """(served as such, registered to an enterprise and enabled)."""
        key = normalise(prefix)
        registered = any(normalise(p) == key for p in self._enabled)
        return registered or any(normalise(p) == key for p in self.homed()), registered


class PrefixRefresher:
    """Re-reads the prefixes when asked; requests during a read make one more read
    after it (never one per request, never a change missed)."""

    def __init__(self, read: Callable[[], Awaitable[None]]):
        self._read = read
        self._task: asyncio.Task[None] | None = None
        self._again = False

    def request(self, keys: tuple[str, ...] = ()) -> None:
        if self._task is not None and not self._task.done():
            self._again = True
            return
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            self._again = False
            try:
                await self._read()
            except Exception as exc:  # the registry is down: the next change or reconnect retries
                log.warning("prefixes not re-read: %s", exc)
            if not self._again:
                return

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
