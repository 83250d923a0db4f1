"""The gate every costly authentication passes, on the HTTP and native fronts alike
(docs/authentication.md, "Limits on guessing").

- Who is guessing: the client network (/32, IPv6 /64; behind the proxies of
  ``http_trusted_proxies`` the forwarded client) and the identity guessed at. Each has a
  failure limit per window (``http_auth_max_failures``, ``auth_identity_max_failures``).
- Reserve before checking: an attempt counts as a failure of both before its check
  runs and is given back if it succeeds (``FailureLimiter``), so 200 guesses at once
  cost at most the limit in checks. An attempt finding the room held by checks still in
  flight waits for one to end (a legitimate burst of logins is served in turn), at most
  as many waiting as the limit; past the failures it is refused (429 / RC 403).
- The checks run in the worker threads of ``CheckPool`` (bounded queue, round-robin
  across clients), each attempt with a time budget: keys left when it is spent are not
  tried.

Everything refused is counted in metrics; log lines are rate-limited (``QuietLog``), so
a flood writes a few lines and a count, not a line per request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import TypeVar

from node.auth.checks import DEFAULT_WORKERS, CheckPool, PoolBusy
from node.auth.identity import ChecksBusy, TooManyFailures
from node.auth.proxies import TrustedProxies
from node.auth.ratelimit import FailureLimiter
from node.runtime.metrics import NodeMetrics
from node.runtime.sources import peer_keys

T = TypeVar("T")
log = logging.getLogger("idnode.auth")

# Worker time one attempt may spend on its checks: with every key within the bounds
# (about a millisecond per signature, a native PBKDF2 capped by
# native_max_pbkdf2_iterations, legacy hashes by MAX_CHECKED_ITERATIONS) it is never
# reached by a real login, only by a record stuffed with expensive keys.
DEFAULT_BUDGET_S = 1.0
UNKNOWN = "unknown"


class QuietLog:
    """At most ``lines`` log lines per ``period_s``; the lines left out are counted and
    reported with the next one allowed."""

    def __init__(
        self,
        logger: logging.Logger,
        monotonic: Callable[[], float],
        *,
        lines: int = 20,
        period_s: float = 60.0,
    ):
        self.logger = logger
        self.monotonic = monotonic
        self.lines = lines
        self.period_s = period_s
        self._start = float("-inf")
        self._used = 0
        self._dropped = 0

    def log(self, level: int, msg: str, *args: object) -> None:
        now = self.monotonic()
        if now - self._start >= self.period_s:
            self._start, self._used = now, 0
        if self._used >= self.lines:
            self._dropped += 1
            return
        self._used += 1
        if self._dropped:
            msg += " (%d similar lines left out)"
            args = (*args, self._dropped)
            self._dropped = 0
        self.logger.log(level, msg, *args)


def shown(client: str) -> str:
    """A client key as messages show it: the address for a /32, else the network."""
    return client.removesuffix("/32")


class AuthGate:
    def __init__(
        self,
        *,
        max_failures: int,
        identity_max_failures: int,
        window_s: float,
        queue_max: int,
        monotonic: Callable[[], float],
        metrics: NodeMetrics | None = None,
        trusted_proxies: Iterable[str] = (),
        workers: int = DEFAULT_WORKERS,
        budget_s: float = DEFAULT_BUDGET_S,
    ):
        self.clients = FailureLimiter(max_failures, window_s)
        self.identities = FailureLimiter(identity_max_failures, window_s)
        self.pool = CheckPool(queue_max=queue_max, workers=workers)
        self.proxies = TrustedProxies(trusted_proxies)
        self.monotonic = monotonic
        self.metrics = metrics
        self.budget_s = budget_s
        self.quiet = QuietLog(log, monotonic)
        # No network is exempt here: a guess from loopback is still a guess (and a proxy
        # sending no X-Forwarded-For must not make every client unlimited).
        self._keys = peer_keys(())
        self._waiting_clients: dict[str, list[asyncio.Future[None]]] = {}
        self._waiting_identities: dict[str, list[asyncio.Future[None]]] = {}
        if metrics is not None:
            gauge = metrics.auth_checks_waiting
            metrics.before_scrape.append(lambda: gauge.set(self.pool.waiting))

    # -- who -------------------------------------------------------------------------------

    def client_address(self, peer: str | None, headers: Mapping[str, str]) -> str | None:
        """The client's address: the peer's, or behind a trusted proxy the forwarded one."""
        return self.proxies.client(peer, headers)

    def client_key(self, address: str | None) -> str:
        """The key a client's failures count against: its /32 or /64."""
        key = self._keys.key(address)
        return key if key is not None else UNKNOWN

    # -- limits ----------------------------------------------------------------------------

    def blocked(
        self, client: str, now: float, identity: str | None = None
    ) -> TooManyFailures | None:
        """The refusal for a client (or identity) whose failures fill the window."""
        wait = self.clients.retry_after(client, now)
        if wait is not None:
            return TooManyFailures(
                f"too many failed authentications from {shown(client)}; retry in {wait} s",
                retry_after_s=wait,
            )
        if identity is not None:
            wait = self.identities.retry_after(identity, now)
            if wait is not None:
                return TooManyFailures(
                    f"too many failed authentications as {identity}; retry in {wait} s",
                    retry_after_s=wait,
                )
        return None

    def record_failure(self, client: str, now: float) -> None:
        """A cheap failure (nothing costly was checked), counted after the fact."""
        self.clients.record_failure(client, now)

    def attempt(self, client: str, identity: str | None, *, limited: bool = True) -> Attempt:
        """``async with gate.attempt(client, identity) as a:`` reserves a failure of both
        (TooManyFailures when they are blocked), runs checks with ``a.run``, and settles
        on leaving: given back if ``a.succeeded()`` was called or nothing was checked.
        ``limited=False``: the pool and the budget only (a server asking us to verify)."""
        return Attempt(self, client, identity, limited)

    async def _reserve(self, client: str, identity: str | None) -> None:
        while True:
            now = self.monotonic()
            refusal = self.blocked(client, now, identity)
            if refusal is not None:
                raise refusal
            if self.clients.has_room(client, now) and (
                identity is None or self.identities.has_room(identity, now)
            ):
                self.clients.reserve(client)
                if identity is not None:
                    self.identities.reserve(identity)
                return
            await self._wait_for_room(client, identity)

    async def _wait_for_room(self, client: str, identity: str | None) -> None:
        """Wait until a check of ``client`` or ``identity`` ends; TooManyFailures when
        as many wait already as the limit allows checks."""
        places = [(self._waiting_clients, client, self.clients.max_failures)]
        if identity is not None:
            places.append((self._waiting_identities, identity, self.identities.max_failures))
        for table, key, most in places:
            if len(table.get(key, ())) >= most:
                raise TooManyFailures(
                    f"too many authentications in progress for {shown(key)}; retry in 1 s",
                    retry_after_s=1,
                )
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for table, key, _ in places:
            table.setdefault(key, []).append(turn)
        try:
            await turn
        finally:
            for table, key, _ in places:
                waiters = table.get(key)
                if waiters is not None and turn in waiters:
                    waiters.remove(turn)
                    if not waiters:
                        del table[key]

    def _settle(self, client: str, identity: str | None, *, failed: bool) -> None:
        now = self.monotonic()
        self.clients.settle(client, now, failed=failed)
        if identity is not None:
            self.identities.settle(identity, now, failed=failed)
        for table, key in ((self._waiting_clients, client), (self._waiting_identities, identity)):
            for turn in table.get(key, ()) if key is not None else ():
                if not turn.done():
                    turn.set_result(None)  # each one asks again

    # -- checks ------------------------------------------------------------------------------

    async def run(self, source: str, check: Callable[..., T], *args: object) -> T:
        """``check(*args)`` in the worker threads; ChecksBusy (503 / RC 3) when the queue
        is full."""
        try:
            result = await self.pool.run(source, check, *args)
        except PoolBusy as exc:
            if self.metrics is not None:
                self.metrics.auth_checks.labels("busy").inc()
            self.quiet.log(logging.WARNING, "authentication check refused: %s", exc)
            raise ChecksBusy(f"{exc}; retry in 1 s", retry_after_s=1) from None
        if self.metrics is not None:
            self.metrics.auth_checks.labels("run").inc()
        return result

    def skipped(self, reason: str, count: int = 1) -> None:
        """Stored keys an attempt did not try (``cost``, ``unreadable``, ``cap``,
        ``budget``)."""
        if self.metrics is not None and count:
            self.metrics.auth_keys_skipped.labels(reason).inc(count)


class Attempt:
    def __init__(self, gate: AuthGate, client: str, identity: str | None, limited: bool):
        self.gate = gate
        self.client = client
        self.identity = identity
        self.limited = limited
        self.spent_s = 0.0  # worker time of this attempt's checks
        self.checked = False
        self.proven = False
        self._reserved = False

    async def __aenter__(self) -> Attempt:
        if self.limited:
            await self.gate._reserve(self.client, self.identity)
            self._reserved = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._reserved:
            self._reserved = False
            self.gate._settle(self.client, self.identity, failed=self.checked and not self.proven)

    def succeeded(self) -> None:
        self.proven = True

    @property
    def out_of_time(self) -> bool:
        return self.spent_s >= self.gate.budget_s

    async def run(self, check: Callable[..., T], *args: object) -> T:
        """One check in the worker threads, its time added to the attempt's. It counts as
        checked from the moment it is queued: a client that goes away meanwhile does not
        get its guess back."""
        monotonic = self.gate.monotonic

        def timed() -> T:
            start = monotonic()
            try:
                return check(*args)
            finally:
                self.spent_s += monotonic() - start

        was = self.checked
        self.checked = True
        try:
            return await self.gate.run(self.client, timed)
        except ChecksBusy:
            self.checked = was
            raise
