"""Who may open one more connection: the caps of the TCP fronts (native TCP, HTTP) and the
file descriptors the process has left.

A connection is refused, closed at once and counted, when its front already holds its
maximum, when its source already holds its per-source maximum (the address, /32 or /64,
as node.runtime.sources keys handshaken peers; exempt networks have no per-source cap),
or when fewer than ``fd_reserve`` file descriptors would remain free. Idle sockets once
took every descriptor, and with them the registry's connections, the listeners and
/readyz; the reserve keeps descriptors for those (the health port is never refused here).

Counting open descriptors exactly means listing /proc/self/fd, which takes ~50 ms at
20,000 descriptors: too slow for every accept. So the count is taken every ``recount_s``
and kept current in between by the connections the gates open and close (everything
else, the registry's pool, logs, the listeners, changes slowly); a new connection's own
descriptor number is a lower bound as well, since the kernel hands out the lowest free one.
"""

from __future__ import annotations

import logging
import os
import resource
import time
from collections.abc import Callable
from enum import StrEnum

from node.runtime.lograte import LogEvery
from node.runtime.metrics import NodeMetrics
from node.runtime.sources import Holdings, SourceKeys

log = logging.getLogger("idnode.connections")

RECOUNT_S = 10.0
# When the hard limit is "unlimited", the most a soft limit is raised to.
MAX_RAISED_LIMIT = 1_048_576
FRONT_NAMES = {"tcp": "native TCP", "http": "HTTP"}


class Refusal(StrEnum):
    TOO_MANY = "too_many_connections"
    FROM_SOURCE = "too_many_from_source"
    FD_RESERVE = "fd_reserve"

    @property
    def message(self) -> str:
        """What the client is told, where the protocol has a way to tell it (HTTP 503)."""
        return _MESSAGES[self]


_MESSAGES = {
    Refusal.TOO_MANY: "too many connections to this server; retry later",
    Refusal.FROM_SOURCE: "too many connections from your address; close some and retry",
    Refusal.FD_RESERVE: "server out of connection capacity; retry later",
}


def open_files_limit() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def raise_open_files_limit() -> tuple[int, int]:
    """Raise the soft open-files limit to the hard one (many distros start services at a
    soft 1,024 with a hard limit far above); returns (before, after)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = MAX_RAISED_LIMIT if hard == resource.RLIM_INFINITY else hard
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:  # e.g. macOS caps it below the hard limit
            log.warning("open files limit left at %d: cannot raise it to %d: %s", soft, target, exc)
            return soft, soft
        return soft, target
    return soft, soft


def count_open_fds() -> int | None:
    """Descriptors open in this process, or None where the system does not list them."""
    for directory in ("/proc/self/fd", "/dev/fd"):
        try:
            return len(os.listdir(directory)) - 1  # less the one listdir itself opened
        except OSError:
            continue
    return None


class FdBudget:
    """The process's file descriptors: how many are left, shared by every gate."""

    def __init__(
        self,
        reserve: int,
        *,
        limit: int | None = None,
        count: Callable[[], int | None] = count_open_fds,
        monotonic: Callable[[], float] = time.monotonic,
        recount_s: float = RECOUNT_S,
    ):
        self.reserve = reserve
        self.limit = limit if limit is not None else open_files_limit()
        self._count = count
        self._monotonic = monotonic
        self._recount_s = recount_s
        self._next_count = float("-inf")
        self.held = 0  # connections the gates hold open
        self._other = 0  # descriptors not held by them, as of the last count

    def spare(self, newest_fd: int) -> int:
        """Descriptors left free with the connection just accepted on ``newest_fd`` open."""
        now = self._monotonic()
        if now >= self._next_count:
            self._next_count = now + self._recount_s
            counted = self._count()
            if counted is not None:
                self._other = max(0, counted - self.held - 1)  # less the new one
        in_use = max(self._other + self.held + 1, newest_fd + 1)
        return self.limit - in_use


class Ticket:
    """One admitted connection; ``release`` when it closes (once; later calls do nothing)."""

    __slots__ = ("_gate", "_key")

    def __init__(self, gate: ConnectionGate, key: str | None):
        self._gate: ConnectionGate | None = gate
        self._key = key

    def release(self) -> None:
        gate, self._gate = self._gate, None
        if gate is not None:
            gate._give_back(self._key)


class ConnectionGate:
    """The connection caps of one front (``front``: "tcp" or "http", as in the metrics
    and the names of its settings)."""

    def __init__(
        self,
        front: str,
        metrics: NodeMetrics,
        *,
        max_connections: int,
        per_source: int,
        keys: SourceKeys,
        fds: FdBudget,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self.front = front
        self.max_connections = max_connections
        self.keys = keys
        self.fds = fds
        self.holdings = Holdings(per_source)
        self.open = 0
        self._open_gauge = metrics.connections_open.labels(front)
        self._refused = {r: metrics.connections_refused.labels(front, r.value) for r in Refusal}
        self._logs = {r: LogEvery(log, monotonic=monotonic) for r in Refusal}

    def admit(self, host: str | None, fd: int) -> Ticket | Refusal:
        """A ticket for the connection just accepted from ``host`` on descriptor ``fd``,
        or why it must be closed at once (counted and logged, rate-limited, here)."""
        if self.open >= self.max_connections:
            return self._refuse(Refusal.TOO_MANY, host)
        key = self.keys.key(host)
        if not self.holdings.take(key):
            return self._refuse(Refusal.FROM_SOURCE, host)
        spare = self.fds.spare(fd)
        if spare < self.fds.reserve:
            self.holdings.give_back(key)
            return self._refuse(Refusal.FD_RESERVE, host, spare)
        self.open += 1
        self.fds.held += 1
        self._open_gauge.inc()
        return Ticket(self, key)

    def _give_back(self, key: str | None) -> None:
        self.holdings.give_back(key)
        self.open -= 1
        self.fds.held -= 1
        self._open_gauge.dec()

    def _refuse(self, refusal: Refusal, host: str | None, spare: int = 0) -> Refusal:
        self._refused[refusal].inc()
        name, front = FRONT_NAMES.get(self.front, self.front), self.front
        note = self._logs[refusal]
        if refusal is Refusal.TOO_MANY:
            note(
                "%s: refusing new connections: %d open (%s_max_connections)",
                name,
                self.open,
                front,
            )
        elif refusal is Refusal.FROM_SOURCE:
            note(
                "%s: refusing connections from %s: it holds %d (%s_max_connections_per_source)",
                name,
                host,
                self.holdings.per_source,
                front,
            )
        else:
            note(
                "%s: refusing new connections: %d of %d file descriptors free, fewer than "
                "fd_reserve (%d); raise the open files limit or lower the connection caps",
                name,
                max(spare, 0),
                self.fds.limit,
                self.fds.reserve,
            )
        return refusal
