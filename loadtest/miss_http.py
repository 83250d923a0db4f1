"""The HTTP miss path: ``GET /api/handles/<h>`` for identifiers never asked before.

wrk (one thread, keep-alive, ``CONNECTIONS`` connections) runs ``miss_http.lua``, which
names a new roll in every request, scattered over the table as udpload's ``perm``
stream is. The node (cache large enough that nothing is evicted) must read each from
the registry, decode, build the JSON and keep the reply; its own counters say how many
registry reads and cache hits the measured run made.

The floor, measured in the same run with the same client and stream (later rolls, so
none is in PostgreSQL's buffers because the node asked first): ``miss_http_floor.py``,
a bare aiohttp handler making one asyncpg primary-key read per request, on the node's
pool settings, returning the stored bytes. A node slower than it spends more on a miss
than one database read; a node faster than it saves round trips (registry.readbatch).
"""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

from loadtest.benchtable import Row
from loadtest.cache_native import LOADER_CPU, UdpPlan, node
from loadtest.harness import (
    OUT,
    BenchError,
    Child,
    Samples,
    node_env,
    sample_sum,
    scrape_samples,
    taskset,
)
from loadtest.rolls import roll_handle

CONNECTIONS = 64
SCRIPT = Path(__file__).with_name("miss_http.lua")
_FLOOR = re.compile(r"floor ready port=(\d+)")
_REQUESTS = re.compile(r"miss_http requests=(\d+) next=(\d+)")
_RATE = re.compile(r"Requests/sec:\s+([\d.]+)")
BIG_CACHE = {
    "IDNODE_CACHE_MAX_BYTES": str(3 << 30),  # nothing evicted: every request a first read
    "IDNODE_CACHE_TTL_CAP_S": "7200",
}


def wrk_misses(
    base_url: str, seconds: float, rolls: int, start: int, cpu: int | None
) -> tuple[dict[str, float], int]:
    """One wrk run of the script from stream position ``start``: (figures, the position
    a following run starts at: past every request made, answered or not)."""
    secs = max(1, round(seconds))
    out = subprocess.run(
        [
            *taskset(cpu),
            "wrk",
            "-t1",
            f"-c{CONNECTIONS}",
            f"-d{secs}s",
            "--latency",
            "-s",
            str(SCRIPT),
            base_url,
            "--",
            str(rolls),
            str(start),
        ],
        capture_output=True,
        text=True,
        timeout=secs + 60,
        check=True,
    ).stdout
    made = _REQUESTS.search(out)
    if made is None:
        raise BenchError(f"wrk printed no request count: {out[-300:]}")
    return wrk_summary(out), int(made.group(2))


def wrk_summary(out: str) -> dict[str, float]:
    """Rate, p50/p99 (ms) and non-2xx count from wrk's --latency output."""
    rate = _RATE.search(out)
    if rate is None:
        raise BenchError(f"wrk printed no rate: {out[-300:]}")

    def pct(p: str) -> float:
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)", out, re.MULTILINE)
        if not m:
            return float("nan")
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rate": float(rate.group(1)),
        "p50": pct("50"),
        "p99": pct("99"),
        "non2xx": float(errors.group(1)) if errors else 0.0,
    }


def _check(url: str, floor: bool) -> None:
    with urllib.request.urlopen(url, timeout=10) as resp:
        body: bytes = resp.read()
    if not floor and b'"responseCode":1' not in body:
        raise BenchError(f"{url} did not resolve: {body[:200]!r}")


def _runs(
    plan: UdpPlan, base: str, start: int, scrape: Callable[[], Samples] = dict
) -> tuple[dict[str, float], int, Samples, Samples]:
    """Warm-up (discarded) from ``start``, then the measured run right after it, with
    ``scrape()`` before and after the measured run; the position after it."""
    cpu = LOADER_CPU if plan.pin else None
    if plan.warmup > 0:
        _, start = wrk_misses(base, plan.warmup, plan.keys, start, cpu)
    before = scrape()
    r, start = wrk_misses(base, plan.seconds, plan.keys, start, cpu)
    return r, start, before, scrape()


def http_miss(plan: UdpPlan) -> tuple[list[Row], list[str]]:
    notes: list[str] = []
    with node(plan, "miss_http", env=BIG_CACHE) as proc:
        base = f"http://127.0.0.1:{proc.http_port}"
        _check(f"{base}/api/handles/{roll_handle(plan.keys - 1)}", floor=False)
        plan.progress(f"3 miss http: GET a new roll each time, wrk -c{CONNECTIONS}")
        node_r, next_start, before, after = _runs(
            plan, base, 0, lambda: scrape_samples(proc.admin_port)
        )
    floor = Child(
        "http miss floor",
        [
            *taskset(plan.server_cpu),
            sys.executable,
            str(Path(__file__).with_name("miss_http_floor.py")),
            "--database-url",
            plan.dsn,
        ],
        OUT / "cache_bench_miss_http_floor.log",
        node_env(),
    )
    try:
        port = int(floor.wait_for_line(_FLOOR, 30).group(1))
        _check(f"http://127.0.0.1:{port}/api/handles/{roll_handle(0)}", floor=True)
        plan.progress(f"3 miss http: floor pid {floor.pid} (one asyncpg read per GET)")
        floor_r, _, _, _ = _runs(plan, f"http://127.0.0.1:{port}", next_start)
    finally:
        floor.stop()

    def delta(name: str, **labels: str) -> float:
        return sample_sum(after, name, **labels) - sample_sum(before, name, **labels)

    reads = delta("idnode_cache_registry_reads_total")
    hits = delta("idnode_cache_hits_total", front="http")
    requests = delta("idnode_requests_total", front="http")
    ratio = node_r["rate"] / (floor_r["rate"] or 1.0)
    rows = [
        Row(
            "3 miss/zipf",
            "http: 1 asyncpg read per GET (floor)",
            floor_r["rate"],
            floor_r["p50"],
            floor_r["p99"],
            1.0,
            "floor",
        ),
        Row(
            "3 miss/zipf",
            "idnode HTTP GET miss (every id new)",
            node_r["rate"],
            node_r["p50"],
            node_r["p99"],
            ratio,
            "floor",
            detail=f"registry reads {reads:.0f} for {requests:.0f} GETs, cache hits {hits:.0f}",
        ),
    ]
    for name, r in (("http miss floor", floor_r), ("http miss", node_r)):
        if r["non2xx"]:
            notes.append(f"WARNING: {name}: {r['non2xx']:.0f} non-2xx replies")
    if hits > 0.01 * max(1.0, requests):
        notes.append(f"WARNING: http miss: {hits:.0f} cache hits in a run meant to miss")
    return rows, notes
