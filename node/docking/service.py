"""Delivering the docking outbox to the top-level node (README "Docking").

``reconcile`` records what should be upstream (``wanted``) in the outbox; ``deliver``
sends what is due, as native admin operations authenticated with this node's site key
(HS_PUBKEY challenge-response as ``300:0.NA/<own prefix>``), and records the outcome:
acknowledged, or failed and retried after a backoff that doubles up to
``upstream_retry_max_s``. Every operation is idempotent, so one repeated after a crash
between sending and recording does no harm:

- register an own prefix: each value added, or modified where the index is taken;
- register a derived prefix: CREATE with OVRW;
- withdraw: DELETE (derived) or REMOVE of the published indexes (own); "not there"
  counts as done.

Claims are leases in the database, so several nodes sharing a registry deliver each
row once. The loop wakes when prefixes change, when asked (``wake``), and when the
next row falls due; tests wait on ``changed`` rather than sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

from node.client.admin import AdminClient, AdminError, Credentials
from node.client.native import ClientError
from node.client.upstream import Address, Upstreams
from node.docking.wanted import (
    IDENTITY_INDEX,
    PREFIX_SITE_INDEX,
    REGISTER,
    SITE_INDEX,
    identity_of,
    wanted,
)
from node.resolution.site import Site
from node.runtime.metrics import NodeMetrics
from node.settings import Settings
from protocol.codes import ResponseCode
from protocol.valuecodec import decode_values
from protocol.values import HandleValue
from registry.docking import Claimed, DockingOutbox
from registry.errors import RegistryError
from registry.store import Registry

log = logging.getLogger("idnode.docking")

LEASE_S = 60.0  # a claimed row another node may retry after (the sender crashed)
BATCH = 32
PERIOD_S = 300.0  # reconcile this often anyway (a site address that changed, say)
FIRST_RETRY_S = 2.0


class DockingService:
    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        outbox: DockingOutbox,
        site: Callable[[], Site],
        certs: Callable[[str], tuple[HandleValue, ...]],
        metrics: NodeMetrics,
        *,
        clock: Callable[[], float],
        timeout_s: float = 10.0,
    ):
        self.settings = settings
        self.registry = registry
        self.outbox = outbox
        self.site = site
        self.certs = certs
        self.metrics = metrics
        self.clock = clock
        self.timeout_s = timeout_s
        self.upstreams = Upstreams(settings.upstream, dns_server=settings.upstream_dns_server)
        self.changed = asyncio.Condition()  # notified after every delivery round
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    # -- what should be upstream ----------------------------------------------------

    async def reconcile(self) -> int:
        """Record what should be upstream now; how many prefixes changed."""
        known = [r.prefix for r in await self.outbox.rows()]
        want = wanted(
            self.settings.prefixes,
            await self.registry.list_prefixes(),
            known,
            self.site().info,
            self.certs,
        )
        changed = 0
        for item in want:
            changed += await self.outbox.want(item, self.now())
        if changed:
            log.info("docking: %d prefix(es) to bring up to date upstream", changed)
        await self._count_depth()
        return changed

    # -- sending it -------------------------------------------------------------------

    async def deliver(self) -> int:
        """Send every row due now; how many were acknowledged."""
        now = self.now()
        claimed = await self.outbox.claim(now, now + timedelta(seconds=LEASE_S), BATCH)
        done = 0
        for row in claimed:
            try:
                await self._send(row)
            except (AdminError, ClientError, OSError) as exc:
                await self._failed(row, str(exc))
                continue
            if await self.outbox.acknowledged(row.prefix, row.version, self.now()):
                done += 1
                log.info("docking: %s %s acknowledged by the top-level", row.action, row.prefix)
            self.metrics.docking_operations.labels(row.action, "acknowledged").inc()
        await self._count_depth()
        async with self.changed:
            self.changed.notify_all()
        return done

    async def _failed(self, row: Claimed, error: str) -> None:
        backoff = min(FIRST_RETRY_S * 2 ** (row.attempts - 1), self.settings.upstream_retry_max_s)
        backoff *= random.uniform(0.8, 1.2)  # several nodes must not retry in step
        log.warning(
            "docking: %s %s failed (attempt %d, next in %.0f s): %s",
            row.action,
            row.prefix,
            row.attempts,
            backoff,
            error,
        )
        self.metrics.docking_operations.labels(row.action, "failed").inc()
        await self.outbox.failed(
            row.prefix, row.version, error, self.now() + timedelta(seconds=backoff), self.now()
        )

    async def _send(self, row: Claimed) -> None:
        own = row.derived_from or row.prefix
        creds = Credentials(identity_of(own), IDENTITY_INDEX, private_key=self.site().key)
        servers = await self.upstreams.order()
        if not servers:
            raise ClientError("no upstream address (upstream unset or not found in DNS)")
        problems = []
        for server in servers:
            try:
                await self._send_to(server, creds, row)
                return
            except AdminError:
                raise  # the top-level answered, and said no: another address says the same
            except ClientError as exc:  # unreachable: the next address
                problems.append(f"{server}: {exc}")
        raise ClientError("; ".join(problems))

    async def _send_to(self, server: Address, creds: Credentials, row: Claimed) -> None:
        na = f"0.NA/{row.prefix}"
        values = decode_values(row.payload) if row.payload else ()
        async with AdminClient(server.host, server.port, creds, timeout_s=self.timeout_s) as c:
            if row.action == REGISTER and row.derived_from is not None:
                await c.create(na, values, overwrite=True)
            elif row.action == REGISTER:
                for value in values:
                    try:
                        await c.add(na, (value,))
                    except AdminError as exc:
                        if exc.response_code != ResponseCode.VALUE_ALREADY_EXISTS:
                            raise
                        await c.modify(na, (value,))
            elif row.derived_from is not None:
                with _absent_is_done(ResponseCode.HANDLE_NOT_FOUND):
                    await c.delete(na)
            else:
                # No site: the prefix and its derived ones resolve nowhere. One index at
                # a time: a missing one must not keep the other.
                for index in (SITE_INDEX, PREFIX_SITE_INDEX):
                    with _absent_is_done(ResponseCode.VALUES_NOT_FOUND):
                        await c.remove(na, (index,))

    async def _count_depth(self) -> None:
        rows = await self.outbox.rows()
        self.metrics.docking_outbox.set(sum(r.state in ("pending", "failed") for r in rows))

    # -- running ------------------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            # Cleared before the round: a wake during it makes another round at once.
            self._wake.clear()
            try:
                await self.reconcile()
                await self.deliver()
                due = await self.outbox.next_due()
            except RegistryError as exc:
                log.warning("docking: the registry is unavailable: %s", exc)
                due = None
            wait_s = PERIOD_S
            if due is not None:
                wait_s = min(wait_s, max(0.0, (due - self.now()).total_seconds()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait_s)


@contextlib.contextmanager
def _absent_is_done(code: ResponseCode) -> Iterator[None]:
    """Withdrawing what is not there is done already."""
    try:
        yield
    except AdminError as exc:
        if exc.response_code != code:
            raise
