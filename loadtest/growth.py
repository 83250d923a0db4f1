"""The miss path as the registry grows: 100k, 1M and 10M identifiers registered.

    .venv/bin/python -m loadtest.growth                          # load what is missing, measure every step
    nice -n 10 .venv/bin/python -m loadtest.growth --load-only   # only the loads (resumable; 10M is the long one)
    .venv/bin/python -m loadtest.growth --steps 100000,1000000 --quick
    .venv/bin/python -m loadtest.growth --no-load --seconds 10   # measure; fail if a dataset is incomplete

Each step has its own kept embedded PostgreSQL under loadtest/out/growth-pg/<100k|1M|10M>
(loadtest/growth_data.py: COPY, resumable, VACUUMed once), so the table the node reads
holds exactly that many rolls. Per step, the miss path is measured by the cache
benchmark's own rows 3: loadtest/memory.py (a fresh node, udpload ``perm``, every
request a roll never asked before), then, unless ``--no-http``, loadtest/miss_http.py
(GETs in the same order, and its floor: a bare aiohttp handler making one asyncpg read
per GET, which shows what PostgreSQL's own lookup does as the table grows), with
PostgreSQL restarted in between so that both start with empty shared_buffers. Around
each run the block counters of ``handles`` (pg_statio_user_tables) give the
shared_buffers hit ratio, and the table's and indexes' sizes say whether they still
fit in memory: that is what a growth curve turns on. The goal: every step within 20% of the 1M figures (throughput
at least 0.8x, p99 at most 1.2x). Table to stdout, rows appended to
loadtest/out/growth.csv (plotted by ``python -m loadtest.report``).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable as a plain script

from loadtest import miss_http
from loadtest.benchtable import Row, format_table
from loadtest.bulkload import DEFAULT_FIELDS
from loadtest.cache_native import UdpPlan
from loadtest.growth_data import (
    BufferUse,
    GrowthDataset,
    LoadReport,
    Sizes,
    label,
    read_buffer_use,
    read_sizes,
)
from loadtest.harness import OUT, BenchError, cpu_seconds, machine_busy, process_tree, run_bench
from loadtest.memory import miss_and_memory
from loadtest.rolls import RollRecords
from loadtest.udpload import build_udpload

STEPS = (100_000, 1_000_000, 10_000_000)
REFERENCE = 1_000_000
# miss_http's floor: a bare aiohttp handler making one asyncpg read per GET, same stream.
FLOOR_FRONT = "http-floor"
TARGETS = {"udp": "udp miss", "http": "http miss", FLOOR_FRONT: "http floor: 1 pg read"}
RATE_GOAL, P99_GOAL = 0.8, 1.2  # within 20% of the 1M figures
CSV_PATH = OUT / "growth.csv"
MiB = 1 << 20
CSV_FIELDS = (
    "run_at",
    "settings",
    "front",
    "identifiers",
    "rate",
    "p50_ms",
    "p99_ms",
    "rate_vs_1m",
    "p99_vs_1m",
    "heap_bytes",
    "table_bytes",
    "index_bytes",
    "pkey_bytes",
    "shared_buffers",
    "heap_hit_ratio",
    "idx_hit_ratio",
    "heap_blks_read",
    "idx_blks_read",
    "load_rows_per_s",
    "detail",
)


@dataclass(frozen=True)
class Measured:
    front: str  # "udp" | "http" | FLOOR_FRONT
    identifiers: int
    row: Row  # the miss row as memory.py / miss_http.py made it
    sizes: Sizes
    buffers: BufferUse  # during this run (warm-up included)
    load: LoadReport


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", default=",".join(map(str, STEPS)), help="identifiers per step")
    p.add_argument("--quick", action="store_true", help="3 s runs after 1 s warm-ups")
    p.add_argument("--seconds", type=float, help="measured run per step and front (default 10)")
    p.add_argument("--warmup", type=float, help="discarded run before each (default 2)")
    p.add_argument("--load-only", action="store_true", help="load the datasets, measure nothing")
    p.add_argument(
        "--no-load", action="store_true", help="measure only; a dataset not complete is an error"
    )
    p.add_argument("--no-http", action="store_true", help="native UDP only (no wrk run)")
    p.add_argument("--window", type=int, default=64, help="UDP requests kept in flight")
    p.add_argument("--sockets", type=int, default=16, help="UDP source sockets")
    p.add_argument("--pin", action="store_true", help="node on CPU 1, loaders + PostgreSQL on 0")
    p.add_argument("--fields", type=int, default=DEFAULT_FIELDS)
    args = p.parse_args(argv)
    args.seconds = args.seconds or (3.0 if args.quick else 10.0)
    args.warmup = (1.0 if args.quick else 2.0) if args.warmup is None else args.warmup
    try:
        args.step_list = sorted({int(s) for s in args.steps.split(",") if s.strip()})
    except ValueError:
        p.error("--steps takes comma-separated integers")
    if not args.step_list or any(not 1000 <= s <= 10**7 for s in args.step_list):
        p.error("steps must be 1000..10000000")
    if args.load_only and args.no_load:
        p.error("--load-only and --no-load exclude each other")
    return args


def postgres_cpu(dataset: GrowthDataset) -> Callable[[], float] | None:
    postmaster = dataset.server.postmaster_pid()
    if postmaster is None:
        return None
    return lambda: cpu_seconds(process_tree(postmaster))


def measure_step(
    args: argparse.Namespace, dataset: GrowthDataset, load: LoadReport, say: Callable[[str], None]
) -> tuple[list[Measured], list[str]]:
    n = dataset.rolls
    sizes = asyncio.run(read_sizes(dataset.dsn))
    say(
        f"{label(n)}: table {sizes.heap / MiB:.0f} MiB, indexes {sizes.indexes / MiB:.0f} MiB "
        f"(primary key {sizes.pkey / MiB:.0f} MiB), shared_buffers {sizes.shared_buffers}"
    )
    plan = UdpPlan(
        loader=build_udpload(),
        dsn=dataset.dsn,
        keys=n,
        value_count=RollRecords(args.fields, 0).value_count,
        seconds=args.seconds,
        warmup=args.warmup,
        window=args.window,
        sockets=args.sockets,
        pin=args.pin,
        hot=16,
        zipf_s=1.1,
        postgres_cpu=postgres_cpu(dataset),
        progress=say,
    )
    out, notes = [], []
    before = asyncio.run(read_buffer_use(dataset.dsn))
    rows, udp_notes = miss_and_memory(plan, None, fill=False)
    after = asyncio.run(read_buffer_use(dataset.dsn))
    out.append(Measured("udp", n, rows[0], sizes, after - before, load))
    notes += [f"{label(n)} udp: {x}" for x in udp_notes]
    if not args.no_http:
        # miss_http asks for the rolls the UDP run just read (both streams start at 0):
        # a restart empties shared_buffers, so the HTTP run starts as cold as that one did.
        say(f"{label(n)}: restarting PostgreSQL (empty shared_buffers) for the HTTP run")
        dataset.restart()
        plan = replace(plan, postgres_cpu=postgres_cpu(dataset))
        before = asyncio.run(read_buffer_use(dataset.dsn))
        (floor, node_row), http_notes = miss_http.http_miss(plan)
        after = asyncio.run(read_buffer_use(dataset.dsn))
        used = after - before  # the node's run and the floor's, on other rolls, together
        out.append(Measured("http", n, node_row, sizes, used, load))
        out.append(Measured(FLOOR_FRONT, n, floor, sizes, used, load))
        notes += [f"{label(n)} http: {x}" for x in http_notes]
    return out, notes


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def last_reference(path: Path, front: str) -> tuple[float, float] | None:
    """(rate, p99) of the newest 1M row for ``front`` in an earlier run's CSV."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = [r for r in csv.DictReader(f) if r["front"] == front]
    except FileNotFoundError:
        return None
    refs = [r for r in rows if int(r["identifiers"]) == REFERENCE and r["rate"]]
    return (float(refs[-1]["rate"]), float(refs[-1]["p99_ms"])) if refs else None


def table(results: list[Measured], path: Path) -> tuple[list[Row], list[dict[str, object]]]:
    """The printed rows and the CSV records, each against the 1M figure of its front
    (this run's, else the last one in the CSV)."""
    rows, records = [], []
    for m in results:
        ref = next(
            (
                (r.row.rate or 0.0, r.row.p99_ms or 0.0)
                for r in results
                if r.front == m.front and r.identifiers == REFERENCE
            ),
            None,
        )
        of = "1M"
        if ref is None:
            ref, of = last_reference(path, m.front), "1M*"
        rate, p99 = m.row.rate or 0.0, m.row.p99_ms or 0.0
        rate_ratio = rate / ref[0] if ref and ref[0] else None
        p99_ratio = p99 / ref[1] if ref and ref[1] else None
        ok = None
        if m.identifiers != REFERENCE and rate_ratio is not None and p99_ratio is not None:
            ok = rate_ratio >= RATE_GOAL and p99_ratio <= P99_GOAL
        b, s = m.buffers, m.sizes
        parts = [
            f"p99 x{p99_ratio:.2f} of {of}" if p99_ratio is not None else "",
            f"table {s.heap / MiB:.0f} MiB, indexes {s.indexes / MiB:.0f} MiB (pkey {s.pkey / MiB:.0f})",
            f"shared_buffers hits heap {_pct(b.heap_ratio)} index {_pct(b.idx_ratio)}",
            m.row.detail,
        ]
        detail = "; ".join(p for p in parts if p)
        rows.append(
            Row(
                f"growth {label(m.identifiers)}",
                f"{TARGETS[m.front]}, {label(m.identifiers)} ids",
                rate,
                m.row.p50_ms,
                p99,
                rate_ratio,
                of if rate_ratio is not None else "",
                "" if m.identifiers == REFERENCE else "within 20%",
                ok,
                detail,
            )
        )
        records.append(
            {
                "front": m.front,
                "identifiers": m.identifiers,
                "rate": round(rate, 1),
                "p50_ms": m.row.p50_ms,
                "p99_ms": p99,
                "rate_vs_1m": None if rate_ratio is None else round(rate_ratio, 3),
                "p99_vs_1m": None if p99_ratio is None else round(p99_ratio, 3),
                "heap_bytes": s.heap,
                "table_bytes": s.table_all,
                "index_bytes": s.indexes,
                "pkey_bytes": s.pkey,
                "shared_buffers": s.shared_buffers,
                "heap_hit_ratio": b.heap_ratio,
                "idx_hit_ratio": b.idx_ratio,
                "heap_blks_read": b.heap_read,
                "idx_blks_read": b.idx_read,
                "load_rows_per_s": round(m.load.rows_per_s) if m.load.added else None,
                "detail": m.row.detail,
            }
        )
    return rows, records


def append_csv(path: Path, run_at: str, settings: str, records: list[dict[str, object]]) -> None:
    new = not path.exists()
    with open(path, "a", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        if new:
            writer.writeheader()
        for r in records:
            writer.writerow({"run_at": run_at, "settings": settings, **r})


def mem_total() -> int:
    with open("/proc/meminfo", encoding="ascii") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


def run(args: argparse.Namespace, stack: ExitStack) -> int:
    began = time.monotonic()

    def say(line: str) -> None:
        print(f"[{time.monotonic() - began:7.1f}s] {line}", file=sys.stderr, flush=True)

    OUT.mkdir(parents=True, exist_ok=True)
    if not args.load_only and not args.no_http and shutil.which("wrk") is None:
        raise BenchError("wrk not found (apt-get install wrk); or pass --no-http")
    run_at = datetime.now(UTC).isoformat(timespec="seconds")
    busy = 0.0 if args.load_only else machine_busy()
    results: list[Measured] = []
    notes: list[str] = []
    loads: list[str] = []
    for n in args.step_list:
        dataset = GrowthDataset(n)
        with ExitStack() as step:
            say(f"{label(n)}: dataset in {dataset.directory}")
            step.callback(dataset.close)  # also when open() fails after starting the server
            dataset.open()
            load = dataset.ensure(args.fields, say, load=not args.no_load)
            if load.added:
                loads.append(
                    f"{label(n)}: {load.added} rolls COPYed in {load.seconds:.0f} s "
                    f"({load.rows_per_s:.0f} rows/s)"
                )
            if args.load_only:
                say(f"{label(n)}: {n} rolls in place")
                continue
            got, step_notes = measure_step(args, dataset, load, say)
            results += got
            notes += step_notes
    for line in loads:
        print(f"# load {line}")
    if args.load_only:
        return 0
    rows, records = table(results, CSV_PATH)
    print()
    print(
        f"# {run_at}  nproc={os.cpu_count()}  python={platform.python_version()}  "
        f"RAM {mem_total() / (1 << 30):.0f} GiB  pinned={int(args.pin)}  "
        f"busy before start={100 * busy:.0f}% of all CPUs  total {time.monotonic() - began:.0f} s"
    )
    print(
        f"# seconds={args.seconds:g} (after {args.warmup:g} s warm-up)  udp window={args.window} "
        f"sockets={args.sockets}  wrk -t1 -c{miss_http.CONNECTIONS}  ratio: this step / 1M "
        f"(1M*: from an earlier run)"
    )
    for line in format_table(rows):
        print(line)
    for note in notes:
        print(f"# {note}")
    settings = f"quick={int(args.quick)} pin={int(args.pin)} seconds={args.seconds:g}"
    append_csv(CSV_PATH, run_at, settings, records)
    return 1 if any("WARNING" in n for n in notes) else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_bench("growth", lambda stack: run(args, stack))


if __name__ == "__main__":
    sys.exit(main())
