"""Load sweeps: throughput and latency against offered load, for native UDP and HTTP
cache hits.

Every load here is a closed loop, so load is offered as concurrency: udpload keeps
WINDOW requests in flight (loadtest/udpload.c), wrk keeps C keep-alive connections
busy, one request at a time each. Stepping the window / connection count up from 1
shows the knee: below it throughput grows with concurrency at a flat latency; past it
throughput stays and latency grows (latency ≈ concurrency / throughput).

    .venv/bin/python -m loadtest.sweep                      # UDP windows and wrk -c 1..256, 2 s steps
    .venv/bin/python -m loadtest.sweep --only udp --seconds 5 --pin
    .venv/bin/python -m loadtest.sweep --database-url postgresql://...

The registry is the growth benchmark's 100k dataset (loadtest/out/growth-pg/100k,
loaded the first time, locked while the sweep runs) or ``--database-url``. Table to
stdout; the points are appended to loadtest/out/sweep.csv (``python -m loadtest.report``
plots the last run). A step that was not all cache hits is a WARNING.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import re
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, fields, replace
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable as a plain script

from loadtest.benchtable import Row, format_table
from loadtest.bulkload import DEFAULT_FIELDS, load_rolls, rolls_in
from loadtest.cache_native import UdpPlan, checks, hit_share, measure, node, node_parties
from loadtest.growth_data import GrowthDataset
from loadtest.harness import (
    OUT,
    BenchError,
    cpu_seconds,
    process_tree,
    run_bench,
    sample_sum,
    scrape_samples,
    taskset,
)
from loadtest.rolls import RollRecords, roll_handle
from loadtest.udpload import KeyStream, build_udpload

CSV_PATH = OUT / "sweep.csv"
WINDOWS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
CONNECTIONS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
HOT_URL_HANDLE = roll_handle(123)
HIT_SHARE_MIN = 0.99  # a hit sweep whose requests missed measured something else
SWEEP_ROLLS = 100_000  # hits need few; the growth benchmark's smallest step has these


# -- wrk ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class WrkResult:
    rate: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    requests: int
    non2xx: int
    socket_errors: int


_PCT = re.compile(r"^\s+(50|90|99)(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def parse_wrk(out: str) -> WrkResult:
    """wrk --latency's report: rate, p50/p90/p99 (its latency distribution), counts."""
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    if rate is None or total is None:
        raise BenchError(f"cannot read wrk's report:\n{out[-800:]}")
    pct = {p: float(v) * _UNIT_MS[u] for p, v, u in _PCT.findall(out)}
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return WrkResult(
        float(rate.group(1)),
        pct.get("50", float("nan")),
        pct.get("90", float("nan")),
        pct.get("99", float("nan")),
        int(total.group(1)),
        int(non2xx.group(1)) if non2xx else 0,
        sum(int(x) for x in errors.groups()) if errors else 0,
    )


def run_wrk(
    url: str,
    seconds: float,
    connections: int,
    cpu: int | None = None,
    script: Path | None = None,
) -> WrkResult:
    """One wrk run, one thread (the loader must leave the node a core on 2 CPUs)."""
    if shutil.which("wrk") is None:
        raise BenchError("wrk not found (apt-get install wrk)")
    args = [
        *taskset(cpu),
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "5s",
        "--latency",
        *(("-s", str(script)) if script else ()),
        url,
    ]
    done = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if done.returncode != 0:
        raise BenchError(f"wrk failed ({done.returncode}): {done.stderr.strip()[:300]}")
    return parse_wrk(done.stdout)


def resolves(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as resp:
        body: bytes = resp.read()
    if b'"responseCode":1' not in body.replace(b" ", b""):
        raise BenchError(f"{url} did not resolve: {body[:200]!r}")
    return body


# -- the points ----------------------------------------------------------------------


@dataclass(frozen=True)
class SweepPoint:
    front: str  # "udp" | "http"
    load: int  # udpload window, or wrk connections
    rate: float
    p50_ms: float
    p90_ms: float | None  # udpload reports p50 and p99 only
    p99_ms: float
    detail: str = ""


def udp_sweep(plan: UdpPlan, windows: Iterable[int]) -> tuple[list[SweepPoint], list[str]]:
    """One node, ``plan.hot`` hot rolls (warmed by the first warm-up), a run per window."""
    stream = KeyStream("hot", plan.keys, hot=plan.hot)
    points, notes = [], []
    with node(plan, "sweep_udp") as proc:
        for i, window in enumerate(windows):
            step = replace(plan, warmup=plan.warmup if i == 0 else min(plan.warmup, 0.5))
            plan.progress(f"sweep udp: window {window}")
            m = measure(
                step,
                proc.handle_port,
                stream,
                metrics=[proc.admin_port],
                parties=node_parties(plan, proc),
                window=window,
            )
            b, share = m.run.blast, hit_share(m)
            detail = f"hits {100 * share:.1f}%, lost {b.lost}; {m.cpu_text()}"
            points.append(SweepPoint("udp", window, b.rate, b.p50_ms, None, b.p99_ms, detail))
            notes += checks(f"sweep udp window {window}", m, window)
            if share < HIT_SHARE_MIN:
                notes.append(f"WARNING: sweep udp window {window}: only {100 * share:.0f}% hits")
    return points, notes


def http_sweep(plan: UdpPlan, connections: Iterable[int]) -> tuple[list[SweepPoint], list[str]]:
    """One node, one hot GET (a cache hit after the first), a wrk run per connection count."""
    cpu = plan.loader_cpu
    points, notes = [], []
    with node(plan, "sweep_http") as proc:
        url = f"http://127.0.0.1:{proc.http_port}/api/handles/{HOT_URL_HANDLE}"
        resolves(url)
        for c in connections:
            plan.progress(f"sweep http: wrk -c{c}")
            if plan.warmup > 0:
                run_wrk(url, min(plan.warmup, 1.0), c, cpu)
            before = scrape_samples(proc.admin_port)
            r = run_wrk(url, plan.seconds, c, cpu)
            after = scrape_samples(proc.admin_port)
            hits = sample_sum(after, "idnode_cache_hits_total", front="http") - sample_sum(
                before, "idnode_cache_hits_total", front="http"
            )
            share = hits / max(1, r.requests)  # may pass 100%: GETs in flight at the end
            detail = f"cache hits {100 * share:.0f}% of {r.requests} GETs"
            points.append(SweepPoint("http", c, r.rate, r.p50_ms, r.p90_ms, r.p99_ms, detail))
            if share < HIT_SHARE_MIN:
                notes.append(f"WARNING: sweep http -c{c}: only {100 * share:.0f}% cache hits")
            if r.non2xx or r.socket_errors:
                notes.append(
                    f"WARNING: sweep http -c{c}: {r.non2xx} non-2xx replies, "
                    f"{r.socket_errors} socket errors"
                )
    return points, notes


# -- CSV -----------------------------------------------------------------------------


def append_points(path: Path, run_at: str, settings: str, points: Iterable[SweepPoint]) -> None:
    names = ["run_at", "settings", *(f.name for f in fields(SweepPoint))]
    new = not path.exists()
    with open(path, "a", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=names)
        if new:
            writer.writeheader()
        for p in points:
            writer.writerow({"run_at": run_at, "settings": settings, **asdict(p)})


def _num(text: str | None) -> float | None:
    return float(text) if text not in (None, "") else None


def read_last_points(path: Path) -> tuple[str, list[SweepPoint]]:
    """(run_at, points) of the last run in a sweep CSV; ("", []) when there is none."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except FileNotFoundError:
        return "", []
    if not rows:
        return "", []
    last = rows[-1]["run_at"]
    points = [
        SweepPoint(
            r["front"],
            int(r["load"]),
            float(r["rate"]),
            float(r["p50_ms"]),
            _num(r["p90_ms"]),
            float(r["p99_ms"]),
            r["detail"],
        )
        for r in rows
        if r["run_at"] == last
    ]
    return last, points


def points_rows(points: Iterable[SweepPoint]) -> list[Row]:
    out = []
    for p in points:
        p90 = f"p90 {p.p90_ms:.2f} ms; " if p.p90_ms is not None else ""
        what = "window" if p.front == "udp" else "wrk -c"
        out.append(
            Row(
                f"sweep {p.front}",
                f"{what} {p.load}",
                p.rate,
                p.p50_ms,
                p.p99_ms,
                detail=p90 + p.detail,
            )
        )
    return out


# -- the registry and the command ----------------------------------------------------


def sweep_registry(
    stack: ExitStack,
    fields_: int,
    database_url: str | None,
    say: Callable[[str], None],
) -> tuple[str, Callable[[], float] | None, int, int]:
    """(dsn, PostgreSQL CPU reader or None, values per record, rolls): the growth
    benchmark's 100k registry (loadtest/growth_data.py; loaded the first time), which
    its lock keeps to this run: the shared bench-pg server is stopped by whichever
    benchmark using it ends first, which would cut a sweep short. Or rolls loaded into
    ``database_url``."""
    if database_url:
        have = asyncio.run(rolls_in(database_url))
        loaded = asyncio.run(
            load_rolls(database_url, max(SWEEP_ROLLS, have), fields_, have=have, progress=say)
        )
        return database_url, None, loaded.value_count, loaded.rolls
    dataset = GrowthDataset(SWEEP_ROLLS)
    stack.callback(dataset.close)
    dataset.open()
    dataset.ensure(fields_, say)
    postmaster = dataset.server.postmaster_pid()
    reader = None
    if postmaster is not None:
        pid = postmaster

        def reader() -> float:
            return cpu_seconds(process_tree(pid))

    return dataset.dsn, reader, RollRecords(fields_, 0).value_count, SWEEP_ROLLS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=2.0, help="measured run per step")
    p.add_argument("--warmup", type=float, default=1.0, help="discarded run before each step")
    p.add_argument("--only", default="udp,http", help="udp, http or both")
    p.add_argument("--windows", default=",".join(map(str, WINDOWS)))
    p.add_argument("--connections", default=",".join(map(str, CONNECTIONS)))
    p.add_argument("--hot", type=int, default=16)
    p.add_argument("--sockets", type=int, default=16)
    p.add_argument("--pin", action="store_true", help="node on CPU 1, loaders + PostgreSQL on 0")
    p.add_argument("--fields", type=int, default=DEFAULT_FIELDS)
    p.add_argument("--database-url")
    args = p.parse_args(argv)
    args.fronts = {f.strip() for f in args.only.split(",") if f.strip()}
    if not args.fronts or args.fronts - {"udp", "http"}:
        p.error("--only takes udp, http or udp,http")
    try:
        args.window_list = [int(x) for x in args.windows.split(",")]
        args.connection_list = [int(x) for x in args.connections.split(",")]
    except ValueError:
        p.error("--windows and --connections are comma-separated integers")
    if any(not 1 <= w <= 4096 for w in args.window_list) or any(
        not 1 <= c <= 10000 for c in args.connection_list
    ):
        p.error("windows must be 1..4096 and connections 1..10000")
    return args


def run_sweep(
    args: argparse.Namespace, stack: ExitStack, say: Callable[[str], None]
) -> tuple[list[SweepPoint], list[str]]:
    """The sweep itself (the report calls this too)."""
    loader = build_udpload()
    dsn, pg_cpu, value_count, rolls = sweep_registry(stack, args.fields, args.database_url, say)
    plan = UdpPlan(
        loader=loader,
        dsn=dsn,
        keys=rolls,
        value_count=value_count,
        seconds=args.seconds,
        warmup=args.warmup,
        window=64,
        sockets=args.sockets,
        pin=args.pin,
        hot=args.hot,
        zipf_s=1.1,
        postgres_cpu=pg_cpu,
        progress=say,
    )
    points: list[SweepPoint] = []
    notes: list[str] = []
    if "udp" in args.fronts:
        got, n = udp_sweep(plan, args.window_list)
        points, notes = points + got, notes + n
    if "http" in args.fronts:
        got, n = http_sweep(plan, args.connection_list)
        points, notes = points + got, notes + n
    return points, notes


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    def run(stack: ExitStack) -> int:
        OUT.mkdir(parents=True, exist_ok=True)
        run_at = datetime.now(UTC).isoformat(timespec="seconds")
        points, notes = run_sweep(args, stack, say)
        print(
            f"\n# {run_at}  seconds={args.seconds:g} (after {args.warmup:g} s warm-up)  pinned={int(args.pin)}"
        )
        for line in format_table(points_rows(points)):
            print(line)
        for note in notes:
            print(f"# {note}")
        settings = f"seconds={args.seconds:g} pin={int(args.pin)}"
        append_points(CSV_PATH, run_at, settings, points)
        return 1 if any(n.startswith("WARNING") for n in notes) else 0

    return run_bench("sweep", run)


if __name__ == "__main__":
    sys.exit(main())
