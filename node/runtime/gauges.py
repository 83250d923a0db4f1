"""Gauges worth a query every minute, not one per request or per scrape: identifiers per
prefix and per enterprise, the database's size, free space where the data dir lives,
the docking outbox by state, unfinished bulk imports, and how long the signing
certificates have left.

``GaugeSet`` is created with ``NodeMetrics`` and holds the latest figures (a family
appears in ``/metrics`` once it has been measured); ``PeriodicGauges`` measures them,
once at start and every ``interval_s`` after, in the background. A scrape only reads
what was measured last, so ``/metrics`` stays as cheap under load as before.

Label cardinality stays bounded whatever the registry holds: the ``top`` (200) prefixes
and enterprises with the most identifiers get a series each, the rest are summed into
one labelled ``other``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from node.runtime.collectors import PoolCollector, WorkerProcessCollector
from node.runtime.lograte import LogEvery
from registry.errors import RegistryError
from registry.stats import ImportsUnderway, PrefixCount, RegistryStats
from registry.store import Registry

log = logging.getLogger("idnode.gauges")

DEFAULT_INTERVAL_S = 60.0
TOP = 200  # prefixes (and enterprises) with a series of their own
OTHER = "other"
DOCKING_STATES = ("pending", "failed", "docked", "withdrawn")
IMPORT_OUTCOMES = ("loaded", "existing", "rejected")

# Subject of each signing certificate -> its notAfter (exp), unix seconds; given now.
CertsExpiry = Callable[[int], Mapping[str, int]]


def top_with_other(
    counts: Iterable[tuple[tuple[str, ...], int]], top: int
) -> list[tuple[tuple[str, ...], int]]:
    """The ``top`` largest (labels, count) pairs, largest first, then one ``other`` pair
    (every label ``other``) summing the rest, if any. Equal labels are added up first."""
    summed: dict[tuple[str, ...], int] = {}
    for labels, n in counts:
        summed[labels] = summed.get(labels, 0) + n
    ranked = sorted(summed.items(), key=lambda item: (-item[1], item[0]))
    kept, rest = ranked[:top], ranked[top:]
    if rest:
        width = len(rest[0][0])
        kept.append(((OTHER,) * width, sum(n for _, n in rest)))
    return kept


@dataclass(frozen=True, slots=True)
class DiskSpace:
    free_bytes: int  # available to an unprivileged process (as df shows it)
    size_bytes: int


def disk_space(path: Path) -> DiskSpace:
    st = os.statvfs(path)
    return DiskSpace(st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize)


class GaugeSet(Collector):
    """The latest measured figures, and the scrape-time collectors beside them (this
    process, the registry pool). Created with NodeMetrics; fed by PeriodicGauges and,
    for the pool, by setting ``pool`` once the database is open."""

    def __init__(self, registry: CollectorRegistry, worker: Callable[[], str], *, top: int = TOP):
        self.top = top
        self.pool: object | None = None  # registry.instrument.InstrumentedPool, once open
        self.identifiers: list[PrefixCount] | None = None
        self.database_bytes: int | None = None
        self.data_dir: DiskSpace | None = None
        self.docking: dict[str, int] | None = None
        self.imports: ImportsUnderway | None = None
        self.cert_expiry_s: dict[str, float] | None = None  # subject -> seconds left
        self.refreshed_at: float | None = None  # unix seconds, the last complete refresh
        self.refresh_errors = 0
        registry.register(WorkerProcessCollector(worker))
        registry.register(PoolCollector(lambda: self.pool))
        registry.register(self)

    def collect(self) -> Iterator[Metric]:
        if self.identifiers is not None:
            yield from self._identifiers(self.identifiers)
        if self.database_bytes is not None:
            yield GaugeMetricFamily(
                "idnode_registry_database_bytes",
                "Size of the registry database on disk (pg_database_size)",
                value=self.database_bytes,
            )
        if self.data_dir is not None:
            yield GaugeMetricFamily(
                "idnode_data_dir_free_bytes",
                "Space free to the node on the filesystem holding data_dir (where the "
                "embedded PostgreSQL keeps its cluster)",
                value=self.data_dir.free_bytes,
            )
            yield GaugeMetricFamily(
                "idnode_data_dir_size_bytes",
                "Size of the filesystem holding data_dir",
                value=self.data_dir.size_bytes,
            )
        if self.docking is not None:
            docking = GaugeMetricFamily(
                "idnode_docking_prefixes",
                "Prefixes in the docking outbox by state: pending and failed are still to "
                "be acknowledged by the top-level node; docked, withdrawn are done",
                labels=["state"],
            )
            for state in DOCKING_STATES:
                docking.add_metric([state], self.docking.get(state, 0))
            yield docking
        if self.imports is not None:
            yield GaugeMetricFamily(
                "idnode_imports_unfinished",
                "Bulk import jobs not finished: running now, or interrupted and resumable",
                value=self.imports.jobs,
            )
            rows = GaugeMetricFamily(
                "idnode_import_rows",
                "Rows of the unfinished import jobs so far, by outcome: loaded (created), "
                "existing (already there, unchanged), rejected",
                labels=["outcome"],
            )
            for outcome in IMPORT_OUTCOMES:
                rows.add_metric([outcome], getattr(self.imports, outcome))
            yield rows
        if self.cert_expiry_s is not None:
            certs = GaugeMetricFamily(
                "idnode_signing_cert_expiry_seconds",
                "Seconds until the certificate of the current record-signing key expires "
                "(its notAfter), by certificate subject; negative once expired",
                labels=["cert"],
            )
            for subject, seconds in sorted(self.cert_expiry_s.items()):
                certs.add_metric([subject], seconds)
            yield certs
        if self.refreshed_at is not None:
            yield GaugeMetricFamily(
                "idnode_gauges_refreshed_timestamp_seconds",
                "When the periodic gauges (identifiers, database size, docking, imports, "
                "certificates) were last measured in full",
                value=self.refreshed_at,
            )
        errors = CounterMetricFamily(
            "idnode_gauges_refresh_errors",
            "Periodic gauge measurements that failed (the figures before them are kept)",
        )
        errors.add_metric([], self.refresh_errors)
        yield errors

    def _identifiers(self, counts: list[PrefixCount]) -> Iterator[Metric]:
        by_prefix = GaugeMetricFamily(
            "idnode_prefix_identifiers",
            f"Identifiers (handles) per prefix: the {self.top} largest prefixes, the rest "
            f"summed as prefix={OTHER!r}",
            labels=["prefix"],
        )
        for (prefix,), n in top_with_other(
            (((c.prefix,), c.identifiers) for c in counts), self.top
        ):
            by_prefix.add_metric([prefix], n)
        yield by_prefix
        by_enterprise = GaugeMetricFamily(
            "idnode_enterprise_identifiers",
            f"Identifiers (handles) per enterprise (credit code and name) over its prefixes: "
            f"the {self.top} largest, the rest summed as enterprise={OTHER!r}",
            labels=["enterprise", "name"],
        )
        pairs = (((c.credit_code, c.enterprise_name), c.identifiers) for c in counts)
        for (code, name), n in top_with_other(pairs, self.top):
            by_enterprise.add_metric([code, name], n)
        yield by_enterprise


class PeriodicGauges:
    """Measures what ``GaugeSet`` shows: at ``start`` (before the node reports ready) and
    every ``interval_s`` after. A part that fails keeps its previous figure, is counted
    in ``idnode_gauges_refresh_errors_total`` and logged at most once per interval."""

    def __init__(
        self,
        gauges: GaugeSet,
        registry: Registry,
        *,
        clock: Callable[[], float],
        data_dir: Path | None = None,
        certs: CertsExpiry | None = None,
        interval_s: float = DEFAULT_INTERVAL_S,
    ):
        self.gauges = gauges
        self.stats = RegistryStats(registry.pool, target=registry.target)
        self.clock = clock
        self.data_dir = data_dir
        self.certs = certs
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None
        self._failed = LogEvery(log, interval_s=max(interval_s, 60.0))

    async def refresh(self) -> None:
        g = self.gauges
        complete = True
        try:
            g.identifiers = await self.stats.identifiers()
            g.database_bytes = await self.stats.database_bytes()
            g.docking = await self.stats.docking_states()
            g.imports = await self.stats.imports()
        except RegistryError as exc:
            complete = self._fail("registry figures", exc)
        if self.data_dir is not None:
            try:
                g.data_dir = await asyncio.to_thread(disk_space, self.data_dir)
            except OSError as exc:
                complete = self._fail(f"free space of {self.data_dir}", exc)
        if self.certs is not None:
            now = self.clock()
            try:
                expiry = self.certs(int(now))
            except Exception as exc:  # a broken key store must not stop the other gauges
                complete = self._fail("signing certificate expiry", exc)
            else:
                g.cert_expiry_s = {subject: exp - now for subject, exp in expiry.items()}
        if complete:
            g.refreshed_at = self.clock()

    def _fail(self, what: str, exc: BaseException) -> bool:
        self.gauges.refresh_errors += 1
        self._failed("periodic gauges: cannot measure %s: %s", what, exc)
        return False

    async def start(self) -> None:
        await self.refresh()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.refresh()
            except Exception as exc:  # a bug here must not end the refreshing for good
                self._fail("the gauges", exc)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
