"""The native UDP parts of the cache benchmarks: cache hits against the bare echo
floor, ``--workers 2`` against ``--workers 1`` on the same load, and a Zipf mix over the
whole dataset. (The miss path shares its node with the memory benchmark: memory.py.)

Every run is udpload (loadtest/udpload.c) against a real ``idnode serve`` on the
benchmark registry: a discarded warm-up, then the measured run, with the node's own
/metrics read between them and after, so each row can prove what it claims (RC 1 for
every reply; hits served from the reply cache).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from loadtest.benchtable import Row
from loadtest.harness import (
    BenchError,
    NodeProcess,
    Samples,
    children_cpu_seconds,
    cpu_seconds,
    process_tree,
    sample_sum,
    scrape_samples,
    start_echo,
    start_idnode,
    udp_outcomes,
)
from loadtest.native_udp import check_resolution
from loadtest.rolls import NODE_PREFIX, roll_handle
from loadtest.udpload import KeyStream, LoadResult, run_udpload
from loadtest.zipf import expected_hit_ratio
from node.client.native import NativeClient
from protocol.fragment import fragment_encoded
from protocol.message import encode

SERVER_CPU, LOADER_CPU = 1, 0
UDP_HIT_GOAL = 0.65
# Issue 15's target for hits whose reply is one datagram (reference server ~0.6-0.7 of
# the echo floor, docs/figures.md), measured on the same identifiers asked for their URL
# value alone: a type filter, so the reply (~150 B) fits one 512-byte datagram.
UDP_SINGLE_GOAL = 0.7
SINGLE_TYPES = ("URL",)


@dataclass(frozen=True)
class UdpPlan:
    """What every native run shares."""

    loader: Path  # the udpload binary
    dsn: str
    keys: int  # rolls 0..keys-1 are in the registry
    value_count: int  # values per roll record
    seconds: float
    warmup: float
    window: int
    sockets: int
    pin: bool
    hot: int
    zipf_s: float
    postgres_cpu: Callable[[], float] | None = None
    progress: Callable[[str], None] = lambda line: None

    @property
    def server_cpu(self) -> int | None:
        return SERVER_CPU if self.pin else None

    @property
    def loader_cpu(self) -> int | None:
        return LOADER_CPU if self.pin else None


@dataclass
class Measured:
    run: LoadResult
    warm: LoadResult | None
    cpu_us: dict[str, float] = field(default_factory=dict)  # per reply, by party
    before: Samples = field(default_factory=dict)  # node metrics after the warm-up
    after: Samples = field(default_factory=dict)  # and after the run

    def delta(self, name: str, **labels: str) -> float:
        return sample_sum(self.after, name, **labels) - sample_sum(self.before, name, **labels)

    def cpu_text(self) -> str:
        return " + ".join(f"{k} {v:.0f}" for k, v in self.cpu_us.items()) + " µs/reply"


@contextmanager
def node(
    plan: UdpPlan,
    name: str,
    *,
    workers: int = 1,
    pin: bool | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[NodeProcess]:
    """An ``idnode serve`` on the benchmark registry, stopped and its data dir removed after."""
    data = Path(tempfile.mkdtemp(prefix="idnode-cache-bench-"))
    cpu = plan.server_cpu if pin is None else (SERVER_CPU if pin else None)
    settings = {"IDNODE_WORKERS": str(workers), **(env or {})}
    try:
        proc = start_idnode(
            plan.dsn,
            data,
            name=f"cache_bench_{name}",
            prefixes=NODE_PREFIX,
            cpu=cpu,
            extra_env=settings,
        )
        try:
            datagrams = asyncio.run(
                check_resolution(proc.handle_port, roll_handle(0), plan.value_count)
            )
            plan.progress(
                f"{name}: node pid {proc.pid} (workers={workers}) on udp {proc.handle_port}; "
                f"{roll_handle(0)} resolves, RC 1, {datagrams} datagram(s)"
            )
            yield proc
        finally:
            proc.stop()
    finally:
        shutil.rmtree(data, ignore_errors=True)


_WORKER_UP = re.compile(r"idnode\.workers: worker (\d+) up: pid \d+, admin port (\d+)")


def admin_ports(proc: NodeProcess, workers: int) -> list[int]:
    """Every worker's metrics port: each serves its own (node.serving.supervisor), and with
    ``--admin-port 0`` they are not consecutive, so they are read from the log."""
    if workers == 1:
        return [proc.admin_port]
    ports = {int(i): int(port) for i, port in _WORKER_UP.findall(proc.child.log_text())}
    if len(ports) < workers:
        raise BenchError(
            f"found the admin ports of {len(ports)} of {workers} workers in {proc.child.log_path}"
        )
    return [ports[i] for i in sorted(ports)]


def scrape_all(ports: list[int]) -> Samples:
    """Metrics of every worker, summed per (name, labels)."""
    total: Samples = {}
    for port in ports:
        for key, value in scrape_samples(port).items():
            total[key] = total.get(key, 0.0) + value
    return total


def measure(
    plan: UdpPlan,
    port: int,
    stream: KeyStream,
    *,
    metrics: list[int] | None = None,
    parties: dict[str, Callable[[], float]] | None = None,
    pin: bool | None = None,
    warm_stream: KeyStream | None = None,
    window: int | None = None,
) -> Measured:
    """Warm-up (discarded), then the measured run; node metrics around the measured run."""
    cpu = plan.loader_cpu if pin is None else (LOADER_CPU if pin else None)
    win = window or plan.window
    warm = None
    if plan.warmup > 0:
        warm = run_udpload(
            plan.loader,
            port,
            warm_stream or stream,
            plan.warmup,
            win,
            sockets=plan.sockets,
            cpu=cpu,
        )
        if stream.mode == "perm" and warm_stream is None:
            stream = replace(stream, start=warm.next_start)  # the miss path never repeats a key
    parties = {**(parties or {}), "udpload": children_cpu_seconds}
    before = scrape_all(metrics) if metrics else {}
    cpu0 = {k: read() for k, read in parties.items()}
    run = run_udpload(plan.loader, port, stream, plan.seconds, win, sockets=plan.sockets, cpu=cpu)
    cpu_us = {
        k: 1e6 * (read() - cpu0[k]) / max(1, run.blast.replies) for k, read in parties.items()
    }
    after = scrape_all(metrics) if metrics else {}
    return Measured(run, warm, cpu_us, before, after)


def node_parties(plan: UdpPlan, proc: NodeProcess) -> dict[str, Callable[[], float]]:
    parties = {"idnode": lambda: cpu_seconds(process_tree(proc.pid))}
    if plan.postgres_cpu is not None:
        parties["postgres"] = plan.postgres_cpu
    return parties


def checks(name: str, m: Measured, window: int) -> list[str]:
    """Notes on what the run must not show: replies other than RC 1, drops, losses."""
    notes = []
    rcs, drops = udp_outcomes(m.before, m.after)
    other = {rc: n for rc, n in rcs.items() if rc != "1"}
    if other:
        notes.append(f"WARNING: {name}: replies other than RC 1: {other}")
    if drops:
        notes.append(f"note: {name}: the node dropped {dict(drops)}")
    lost = m.run.blast.lost
    if lost:
        share = lost / max(1, m.run.blast.replies + lost)
        severity = "WARNING" if share > 0.001 or lost > window else "note"
        notes.append(f"{severity}: {name}: udpload lost {lost} requests ({100 * share:.3f}%)")
    return notes


def hit_share(m: Measured) -> float:
    hits = m.delta("idnode_cache_hits_total", front="udp")
    misses = m.delta("idnode_cache_misses_total", front="udp")
    return hits / max(1.0, hits + misses)


def row(
    bench: str,
    target: str,
    m: Measured,
    ratio: float | None = None,
    ratio_of: str = "",
    goal: str = "",
    ok: bool | None = None,
    detail: str = "",
) -> Row:
    b = m.run.blast
    return Row(bench, target, b.rate, b.p50_ms, b.p99_ms, ratio, ratio_of, goal, ok, detail)


# -- 1: cache hits vs the echo floor ----------------------------------------------------


@dataclass
class UdpHits:
    rows: list[Row]
    notes: list[str]
    floor_rate: float


async def reply_size(port: int, types: tuple[str, ...]) -> tuple[int, int]:
    """(datagrams, bytes) of the reply to roll 0 asked with this type filter."""
    reply = encode(
        await NativeClient("127.0.0.1", port, timeout_s=5.0).resolve(roll_handle(0), (), types)
    )
    return len(fragment_encoded(reply)), len(reply)


def udp_hits(plan: UdpPlan) -> UdpHits:
    stream = KeyStream("hot", plan.keys, hot=plan.hot)
    single = replace(stream, types=SINGLE_TYPES)
    with node(plan, "udp_hit") as proc:
        plan.progress(
            f"1 udp hit: {plan.hot} hot identifiers, warm-up {plan.warmup:g} s, then {plan.seconds:g} s"
        )
        m = measure(
            plan,
            proc.handle_port,
            stream,
            metrics=[proc.admin_port],
            parties=node_parties(plan, proc),
        )
        datagrams, size = asyncio.run(reply_size(proc.handle_port, SINGLE_TYPES))
        plan.progress(
            f"1 udp hit: the same identifiers, type filter {','.join(SINGLE_TYPES)}: "
            f"{datagrams} datagram(s) of {size} B"
        )
        m1 = measure(
            plan,
            proc.handle_port,
            single,
            metrics=[proc.admin_port],
            parties=node_parties(plan, proc),
        )
    echo, port, loop_kind = start_echo(plan.server_cpu)
    try:
        plan.progress(f"1 udp hit: echo floor pid {echo.pid} ({loop_kind}), same load")
        floor = measure(plan, port, stream, parties={"echo": lambda: cpu_seconds([echo.pid])})
    finally:
        echo.stop()
    floor_rate = floor.run.blast.rate or 1.0
    ratio = m.run.blast.rate / floor_rate
    ratio1 = m1.run.blast.rate / floor_rate
    rows = [
        row("1 udp hit", "udp echo (floor)", floor, 1.0, "floor", detail=floor.cpu_text()),
        row(
            "1 udp hit",
            f"idnode cache hit ({plan.hot} hot)",
            m,
            ratio,
            "floor",
            f">={UDP_HIT_GOAL}",
            ratio >= UDP_HIT_GOAL,
            f"hits {100 * hit_share(m):.1f}%; {m.cpu_text()}",
        ),
        row(
            "1 udp hit",
            f"idnode cache hit, 1 datagram ({plan.hot} hot)",
            m1,
            ratio1,
            "floor",
            f">={UDP_SINGLE_GOAL}",
            ratio1 >= UDP_SINGLE_GOAL,
            f"type filter {','.join(SINGLE_TYPES)}: {datagrams} datagram of {size} B; "
            f"hits {100 * hit_share(m1):.1f}%; {m1.cpu_text()}",
        ),
    ]
    notes = checks("udp hit", m, plan.window) + checks("udp hit 1 datagram", m1, plan.window)
    if datagrams != 1:
        notes.append(f"WARNING: udp hit 1 datagram: the reply took {datagrams} datagrams")
    return UdpHits(rows, notes + checks("echo", floor, plan.window), floor_rate)


# -- 6: --workers 2 against --workers 1 -------------------------------------------------


def udp_workers(plan: UdpPlan) -> tuple[list[Row], list[str]]:
    """Same hot-set load, unpinned (two workers need both cores), workers 1 then 2."""
    stream = KeyStream("hot", plan.keys, hot=plan.hot)
    rows, notes, rates = [], [], {}
    for workers in (1, 2):
        with node(plan, f"udp_w{workers}", workers=workers, pin=False) as proc:
            ports = admin_ports(proc, workers)
            plan.progress(f"6 workers: udp hits, workers={workers}, {plan.sockets} source sockets")
            m = measure(
                plan,
                proc.handle_port,
                stream,
                metrics=ports,
                parties=node_parties(plan, proc),
                pin=False,
            )
            split = ""
            if workers > 1:
                per = [
                    sample_sum(scrape_samples(p), "idnode_cache_hits_total", front="udp")
                    for p in ports
                ]
                split = (
                    "hits per worker "
                    + "/".join(f"{100 * x / max(1.0, sum(per)):.0f}%" for x in per)
                    + "; "
                )
        rates[workers] = m.run.blast.rate
        ratio = m.run.blast.rate / (rates[1] or 1.0)
        rows.append(
            row(
                "6 workers",
                f"udp cache hit, workers={workers}",
                m,
                ratio,
                "w1",
                detail=f"{split}{m.cpu_text()}",
            )
        )
        notes += checks(f"udp workers={workers}", m, plan.window)
    return rows, notes


# -- 3b: a Zipf mix over the whole dataset ----------------------------------------------


def udp_zipf(plan: UdpPlan, floor_rate: float | None) -> tuple[list[Row], list[str]]:
    """A fresh node (empty cache), default cache settings; the hit ratio over the measured
    run, read against what a cache that never forgets would hit on the same stream."""
    stream = KeyStream("zipf", plan.keys, zipf_s=plan.zipf_s, seed=7)
    warm = replace(stream, seed=3)
    with node(plan, "zipf") as proc:
        plan.progress(f"3 zipf: s={plan.zipf_s:g} over {plan.keys} identifiers, fresh cache")
        m = measure(
            plan,
            proc.handle_port,
            stream,
            metrics=[proc.admin_port],
            parties=node_parties(plan, proc),
            warm_stream=warm,
        )
    share = hit_share(m)
    before = m.warm.sent if m.warm else 0
    ideal = expected_hit_ratio(plan.keys, plan.zipf_s, before, m.run.sent)
    ratio = m.run.blast.rate / floor_rate if floor_rate else None
    reads = m.delta("idnode_cache_registry_reads_total")
    detail = (
        f"hits {100 * share:.1f}% (a cache that never evicts: {100 * ideal:.1f}%), "
        f"{reads:.0f} registry reads; {m.cpu_text()}"
    )
    target = f"idnode zipf s={plan.zipf_s:g} over {plan.keys // 1000}k"
    return [row("3 miss/zipf", target, m, ratio, "floor" if ratio else "", detail=detail)], checks(
        "zipf", m, plan.window
    )
