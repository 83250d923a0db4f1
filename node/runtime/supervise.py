"""Keeping the embedded PostgreSQL running while the node serves.

The postmaster is a daemon of its own (registry.embedded): if it dies (an OOM kill, a
``kill -9``, a crash, ``pg_ctl stop`` by hand) nothing else brings it back, and the node
would answer every uncached request with "registry unavailable" until someone restarted
it. The supervisor watches the postmaster and restarts it: the first attempt 0.5 s after
the death (the orphaned backends of a killed postmaster need a moment to let go of the
shared memory), then doubling up to 30 s between attempts, without end: a server that
cannot start (a full disk, a broken postgresql.conf) comes back once the operator fixes
it, without a node restart. Each attempt is one log line and counts in
``idnode_embedded_postgres_restarts_total``; ``idnode_embedded_postgres_up`` is 0 while
it is down, and ``/readyz`` says what is happening (``status_words``).

The pool and the invalidation listener need nothing from here: both reconnect by
themselves once the server accepts connections again.

Watching costs nothing while all is well: on Linux a pidfd of the postmaster becomes
readable when it exits, and the loop waits on that; elsewhere its pid is probed once a
second. Only the embedded server is supervised; an external database is its operator's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from registry.embedded import EmbeddedPostgres
from registry.errors import EmbeddedServerError

log = logging.getLogger("idnode.database")

FIRST_DELAY_S = 0.5
MAX_DELAY_S = 30.0
START_TIMEOUT_S = 30.0  # one attempt: recovery after a crash replays the WAL
# A server that dies again within this long after a restart goes on with the backoff it
# had reached, instead of starting over at FIRST_DELAY_S: a crash loop is not a log flood.
STABLE_S = 30.0
POLL_S = 1.0  # without pidfds: how often the postmaster's pid is probed
_POSTMASTER_NAMES = ("postgres", "postmaster")


def backoff_delays(first_s: float = FIRST_DELAY_S, max_s: float = MAX_DELAY_S) -> Iterator[float]:
    """The wait before each restart attempt of one outage: 0.5, 1, 2, 4 ... 30, 30 ..."""
    delay = first_s
    while True:
        yield delay
        delay = min(delay * 2, max_s)


class EmbeddedSupervisor:
    """Restarts the embedded PostgreSQL whenever its postmaster is gone, until ``stop``.

    ``restarts`` counts attempts (a Prometheus counter); ``up`` is False from the moment
    the death is seen until an attempt succeeds.
    """

    def __init__(
        self,
        pg: EmbeddedPostgres,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        first_delay_s: float = FIRST_DELAY_S,
        max_delay_s: float = MAX_DELAY_S,
        start_timeout_s: float = START_TIMEOUT_S,
    ) -> None:
        self._pg = pg
        self._monotonic = monotonic
        self._first_delay_s = first_delay_s
        self._max_delay_s = max_delay_s
        self._start_timeout_s = start_timeout_s
        self.restarts = 0
        self.up = True
        self._attempt_no = 0  # within the current outage
        self.delay_s = 0.0  # the wait before attempt _attempt_no
        self._up_since: float | None = None  # when the last restart succeeded
        self._next_at: float | None = None  # when attempt _attempt_no starts; None: under way
        self._task: asyncio.Task[None] | None = None
        self._attempt: asyncio.Future[None] | None = None

    def start(self) -> None:
        """Watch the server, which must be running (``EmbeddedPostgres.start`` returned)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop watching; waits for a restart under way, so that the caller may then stop
        the server without a late attempt starting it again."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        attempt = self._attempt
        if attempt is not None and not attempt.done():
            await asyncio.wait([attempt])
            if not attempt.cancelled():
                attempt.exception()  # seen: its outcome no longer matters

    @property
    def restarting(self) -> bool:
        """An attempt to start the server is under way (as the supervisor's task sees it:
        set and cleared by the task alone, so it agrees with ``restarts``)."""
        return not self.up and self._next_at is None

    def status_words(self) -> str | None:
        """None while the server is up, else what /readyz says: ``embedded PostgreSQL not
        running, restart 3 in 4 s`` (or ``restart 3 under way``)."""
        if self.up:
            return None
        what = f"embedded PostgreSQL not running, restart {self._attempt_no}"
        if self._next_at is None:
            return f"{what} under way"
        left = max(0.0, self._next_at - self._monotonic())
        return f"{what} in {left:.0f} s" if left >= 1 else f"{what} in {left:.1f} s"

    def collector(self) -> Collector:
        return _SupervisorCollector(self)

    def register(self, registry: CollectorRegistry) -> None:
        registry.register(self.collector())

    # -- the loop --------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            pid = await self._watch()
            self.up = False
            log.warning(
                "embedded PostgreSQL (pid %s) has exited; restarting it (log: %s)",
                pid if pid is not None else "unknown",
                self._pg.log_path,
            )
            since = self._up_since
            if since is not None and self._monotonic() - since < STABLE_S:
                await self._restart(min(self.delay_s * 2, self._max_delay_s))
            else:
                await self._restart(self._first_delay_s)

    async def _restart(self, first_delay_s: float) -> None:
        """Attempts with backoff until one succeeds; one log line each."""
        for attempt_no, delay in enumerate(
            backoff_delays(first_delay_s, self._max_delay_s), start=1
        ):
            self._attempt_no = attempt_no
            self.delay_s = delay
            self._next_at = self._monotonic() + delay
            await asyncio.sleep(delay)
            self._next_at = None
            self.restarts += 1
            self._attempt = asyncio.ensure_future(
                asyncio.to_thread(self._pg.start, self._start_timeout_s)
            )
            try:
                # Shielded: cancelling the supervisor must not orphan a start in progress
                # (stop() waits for it instead).
                await asyncio.shield(self._attempt)
            except Exception as exc:  # whatever it was, the server is still down: retry
                reason = (
                    exc.message
                    if isinstance(exc, EmbeddedServerError)
                    else f"{type(exc).__name__}: {exc}"
                )
                log.warning(
                    "embedded PostgreSQL restart %d failed: %s; next attempt in %g s",
                    attempt_no,
                    reason,
                    min(delay * 2, self._max_delay_s),
                )
                continue
            self.up = True
            self._up_since = self._monotonic()
            log.warning(
                "embedded PostgreSQL restarted (attempt %d, pid %s)",
                attempt_no,
                self._pg.postmaster_pid(),
            )
            return

    async def _watch(self) -> int | None:
        """Return once the postmaster that serves the cluster now has exited: its pid."""
        pid = self._pg.postmaster_pid()
        if pid is None or not _is_postmaster(pid):
            return pid
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            return pid
        except (AttributeError, OSError):  # not Linux, or a kernel before 5.3
            while _alive(pid):  # a pid probe once a second, instead of the pidfd
                await asyncio.sleep(POLL_S)
                continue
            return pid
        loop = asyncio.get_running_loop()
        exited = loop.create_future()
        loop.add_reader(pidfd, exited.set_result, None)
        try:
            await exited
        finally:
            loop.remove_reader(pidfd)
            os.close(pidfd)
        return pid


def _is_postmaster(pid: int) -> bool:
    """postmaster.pid may outlive its server (kill -9) and the pid be reused since: watch
    it only if it still is a PostgreSQL server process."""
    try:
        name = Path(f"/proc/{pid}/comm").read_text(encoding="utf-8", errors="replace").strip()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: trust the pid file
        return _alive(pid)
    return name in _POSTMASTER_NAMES


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # the server's own user, not ours: it exists
        return True
    return True


class _SupervisorCollector(Collector):
    def __init__(self, supervisor: EmbeddedSupervisor) -> None:
        self.supervisor = supervisor

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        s = self.supervisor
        yield CounterMetricFamily(
            "idnode_embedded_postgres_restarts",
            "Attempts to restart the embedded PostgreSQL after it exited while the node ran",
            value=s.restarts,
        )
        yield GaugeMetricFamily(
            "idnode_embedded_postgres_up",
            "1 while the embedded PostgreSQL's postmaster runs, 0 while it is being restarted",
            value=1 if s.up else 0,
        )
