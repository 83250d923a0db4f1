"""The dashboard's live charts: a ring buffer of samples of the node's own metrics and
server-rendered SVG lines.

Every ``console_sample_interval_s`` the sampler reads the totals of the Prometheus
registry the node already keeps (requests, cache hits, the latency histogram, errors,
registry connections, upstream queries: no new counting on any request path) and keeps
the differences as rates in a ring of ``console_samples``. The charts are SVG made here
(no script, no library): the page reloads itself to move them on.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from node.fronts.http.console.layout import e

# Response codes that are the node's failure, not the client's: RC 2 (error) and RC 3
# (server too busy) on every front, HTTP 5xx where the API counts by status.
ERROR_RCS = frozenset({"2", "3", "500", "502", "503", "504"})


@dataclass(frozen=True, slots=True)
class Totals:
    """Counter totals at one moment."""

    at: float
    requests: float
    hits: float
    errors: float
    upstream: float
    upstream_failed: float
    buckets: tuple[tuple[float, float], ...]  # (upper bound, cumulative count)
    pool_in_use: float
    pool_waiting: float
    ready: float


@dataclass(frozen=True, slots=True)
class Sample:
    at: float
    qps: float
    hit_ratio: float | None  # None: no requests in the interval
    p50_ms: float | None
    p99_ms: float | None
    errors_per_s: float
    upstream_per_s: float
    upstream_failed_per_s: float
    pool_in_use: float
    pool_waiting: float
    ready: float


def read_totals(registry: CollectorRegistry, at: float) -> Totals:
    requests = hits = errors = upstream = failed = in_use = waiting = ready = 0.0
    buckets: dict[float, float] = {}
    for metric in registry.collect():
        for s in metric.samples:
            name, labels, value = s.name, s.labels, s.value
            if name == "idnode_requests_total":
                requests += value
                if labels.get("rc") in ERROR_RCS:
                    errors += value
            elif name == "idnode_cache_hits_total":
                hits += value
            elif name in ("idnode_request_seconds_bucket", "idnode_cache_hit_seconds_bucket"):
                le = float(labels["le"])
                buckets[le] = buckets.get(le, 0.0) + value
            elif name == "idnode_upstream_exchange_seconds_count":
                upstream += value
                if labels.get("result") != "answered":
                    failed += value
            elif name == "idnode_registry_pool_connections" and labels.get("state") == "in_use":
                in_use += value
            elif name == "idnode_registry_pool_waiting":
                waiting += value
            elif name == "idnode_ready":
                ready = value
    return Totals(
        at,
        requests,
        hits,
        errors,
        upstream,
        failed,
        tuple(sorted(buckets.items())),
        in_use,
        waiting,
        ready,
    )


def quantile(
    q: float, before: Sequence[tuple[float, float]], after: Sequence[tuple[float, float]]
) -> float | None:
    """The ``q`` quantile (seconds) of what the histogram observed between two readings,
    interpolated within its bucket as Prometheus's histogram_quantile does."""
    old = dict(before)
    counts = [(le, n - old.get(le, 0.0)) for le, n in after]
    if not counts or counts[-1][1] <= 0:
        return None
    rank = q * counts[-1][1]
    low_le, low_n = 0.0, 0.0
    for le, n in counts:
        if n >= rank:
            if math.isinf(le):
                return low_le
            if n == low_n:
                return le
            return low_le + (le - low_le) * (rank - low_n) / (n - low_n)
        low_le, low_n = le, n
    return None


def sample_between(a: Totals, b: Totals) -> Sample:
    span = max(b.at - a.at, 1e-9)
    asked = b.requests - a.requests
    p50, p99 = quantile(0.5, a.buckets, b.buckets), quantile(0.99, a.buckets, b.buckets)
    return Sample(
        b.at,
        asked / span,
        (b.hits - a.hits) / asked if asked > 0 else None,
        None if p50 is None else p50 * 1000,
        None if p99 is None else p99 * 1000,
        (b.errors - a.errors) / span,
        (b.upstream - a.upstream) / span,
        (b.upstream_failed - a.upstream_failed) / span,
        b.pool_in_use,
        b.pool_waiting,
        b.ready,
    )


class Sampler:
    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        interval_s: float,
        keep: int,
        clock: Callable[[], float],
    ):
        self.registry = registry
        self.interval_s = interval_s
        self.clock = clock
        self.samples: deque[Sample] = deque(maxlen=keep)
        self._last: Totals | None = None
        self._task: asyncio.Task[None] | None = None

    def take(self) -> None:
        totals = read_totals(self.registry, self.clock())
        if self._last is not None:
            self.samples.append(sample_between(self._last, totals))
        self._last = totals

    async def _run(self) -> None:
        while True:
            self.take()
            await asyncio.sleep(self.interval_s)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


# -- SVG ---------------------------------------------------------------------------------

W, H, PAD = 300, 110, 4
COLOURS = ("#0a58ca", "#c2410c")


def _fmt(v: float) -> str:
    if v >= 100:
        return f"{v:.0f}"
    if v >= 1:
        return f"{v:.1f}"
    return f"{v:.2f}"


def line_chart(
    series: Sequence[tuple[str, Sequence[float | None]]], *, floor_max: float = 1.0
) -> str:
    """An SVG of one or two lines over the same samples; gaps where a value is None.
    The y axis starts at 0 and ends at the largest value (at least ``floor_max``)."""
    values = [v for _, vs in series for v in vs if v is not None]
    top = max([floor_max, *values])
    n = max((len(vs) for _, vs in series), default=0)
    paths = []
    for (_, vs), colour in zip(series, COLOURS, strict=False):
        d, pen = [], "M"
        for i, v in enumerate(vs):
            if v is None:
                pen = "M"
                continue
            x = PAD + (W - 2 * PAD) * (i / max(n - 1, 1))
            y = H - PAD - (H - 2 * PAD) * (v / top)
            d.append(f"{pen}{x:.1f},{y:.1f}")
            pen = "L"
        if d:
            paths.append(
                f'<path d="{" ".join(d)}" fill="none" stroke="{colour}" stroke-width="2"/>'
            )
    legend = " · ".join(
        f'<tspan fill="{c}">{e(name)} {_fmt(_last(vs))}</tspan>'
        for (name, vs), c in zip(series, COLOURS, strict=False)
    )
    return (
        f'<svg viewBox="0 0 {W} {H + 16}" role="img" xmlns="http://www.w3.org/2000/svg">'
        f'<rect x="0" y="0" width="{W}" height="{H}" fill="#f8fafb" stroke="#dde3e8"/>'
        f'<text x="{W - PAD}" y="12" font-size="10" text-anchor="end" fill="#59636e">{_fmt(top)}</text>'
        f"{''.join(paths)}"
        f'<text x="0" y="{H + 13}" font-size="11">{legend}</text></svg>'
    )


def _last(values: Iterable[float | None]) -> float:
    found = [v for v in values if v is not None]
    return found[-1] if found else 0.0
