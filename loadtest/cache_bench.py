"""The record and reply cache, measured: one command, one table.

    .venv/bin/python -m loadtest.cache_bench                 # everything: ~3 min + the 1M fill
    .venv/bin/python -m loadtest.cache_bench --quick         # 3 s runs, 50k records, < 2 min
    .venv/bin/python -m loadtest.cache_bench --skip memory   # all but the fill, ~3 min
    .venv/bin/python -m loadtest.cache_bench --only udp,lag --seconds 5 --pin

Benchmarks (``--only`` names), each against a figure measured in the same run:

  udp      1  native UDP cache hits (a hot set, warmed) vs the bare UDP echo floor
  http     2  HTTP GET cache hits (wrk keep-alive) vs a bare aiohttp handler, same bytes
  miss     3  the miss path (every request a new identifier), native UDP and HTTP GET ...
  zipf     3  ... and a Zipf mix (s=1.1) over the whole dataset, with its hit ratio
  lag      4  invalidation lag: write through instance A, poll instance B until it shows
  memory   5  RSS once every record of the dataset is cached (the miss run's node)
  workers  6  --workers 2 vs --workers 1, UDP and HTTP hits, same load

The registry is an embedded PostgreSQL kept in loadtest/out/bench-pg with the dataset
(1M textile rolls, bulk-loaded once by loadtest/bulkload.py), or ``--database-url``.
Progress goes to stderr; the table to stdout, and appended to loadtest/out/cache_bench.csv.
See loadtest/README.md for what each row means.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable as a plain script

from loadtest.benchtable import Row, append_csv, format_table
from loadtest.bulkload import DEFAULT_FIELDS, BenchDataset, load_rolls, rolls_in
from loadtest.cache_http import http_hits, http_workers
from loadtest.cache_native import LOADER_CPU, UdpPlan, udp_hits, udp_workers, udp_zipf
from loadtest.harness import OUT, BenchError, cpu_seconds, machine_busy, process_tree, run_bench
from loadtest.lag import LagResult, quantile, run_lag
from loadtest.memory import miss_and_memory
from loadtest.miss_http import http_miss
from loadtest.udpload import build_udpload

BENCHES = ("udp", "http", "workers", "zipf", "miss", "memory", "lag")
LAG_GOAL_MS = 50.0
CSV_PATH = OUT / "cache_bench.csv"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--quick",
        action="store_true",
        help="3 s runs after 1 s warm-ups, 50k records, 50 lag writes",
    )
    p.add_argument("--seconds", type=float, help="measured run per target (default 10; quick 3)")
    p.add_argument("--warmup", type=float, help="discarded run before each (default 2; quick 1)")
    p.add_argument(
        "--rolls", type=int, help="records in the dataset (default 1000000; quick 50000)"
    )
    p.add_argument(
        "--lag-writes", type=int, help="writes for the lag benchmark (default 200; quick 50)"
    )
    p.add_argument(
        "--memory-records",
        type=int,
        help="records the miss/memory node is filled with (default: --rolls); the fill runs at "
        "the miss path's pace, ~4-6k/s, so 1M takes ~4 min",
    )
    p.add_argument("--only", default="", help=f"comma-separated subset of {','.join(BENCHES)}")
    p.add_argument("--skip", default="", help="comma-separated benchmarks to leave out")
    p.add_argument(
        "--pin",
        action="store_true",
        help=f"servers on CPU 1, loaders and PostgreSQL on CPU {LOADER_CPU} (not for workers=2)",
    )
    p.add_argument("--window", type=int, default=64, help="UDP requests kept in flight")
    p.add_argument(
        "--sockets",
        type=int,
        default=16,
        help="UDP source sockets of the loader (SO_REUSEPORT spreads them over workers)",
    )
    p.add_argument("--hot", type=int, default=16, help="identifiers in the hot set of the hit runs")
    p.add_argument("--zipf-s", type=float, default=1.1)
    p.add_argument(
        "--fields", type=int, default=DEFAULT_FIELDS, help="roll template fields per record"
    )
    p.add_argument(
        "--database-url",
        help="use this PostgreSQL (rolls are loaded into it) instead of the kept one",
    )
    p.add_argument(
        "--fresh-dataset", action="store_true", help="rebuild the kept dataset from scratch"
    )
    args = p.parse_args(argv)
    quick = args.quick
    args.seconds = args.seconds or (3.0 if quick else 10.0)
    args.warmup = (1.0 if quick else 2.0) if args.warmup is None else args.warmup
    args.rolls = args.rolls or (50_000 if quick else 1_000_000)
    args.lag_writes = args.lag_writes or (50 if quick else 200)
    args.memory_records = min(args.memory_records or args.rolls, args.rolls)
    chosen = [b.strip() for b in args.only.split(",") if b.strip()] or list(BENCHES)
    skipped = {b.strip() for b in args.skip.split(",") if b.strip()}
    unknown = (set(chosen) | skipped) - set(BENCHES)
    if unknown:
        p.error(
            f"unknown benchmark(s) {', '.join(sorted(unknown))}; choose from {', '.join(BENCHES)}"
        )
    args.benches = [b for b in BENCHES if b in chosen and b not in skipped]
    if not 1 <= args.rolls <= 9_999_999 or not 1 <= args.hot <= args.rolls:
        p.error("--rolls must be 1..9999999 and --hot 1..rolls")
    if not 1 <= args.sockets <= 64 or not 1 <= args.window <= 4096:
        p.error("--sockets must be 1..64, --window 1..4096")
    return args


class Bench:
    """The run: the registry, the plan every native run shares, the rows and notes."""

    def __init__(self, args: argparse.Namespace, stack: ExitStack):
        self.args = args
        self.stack = stack
        self.started = time.monotonic()
        self.rows: dict[str, list[Row]] = {}
        self.notes: list[str] = []
        self.floor_rate: float | None = None

    def say(self, line: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f}s] {line}", file=sys.stderr, flush=True)

    def registry(self) -> tuple[str, Callable[[str], str], Callable[[], float] | None, int, int]:
        """(dsn, dsn of another database there, postgres CPU reader, value count, record bytes)."""
        a = self.args
        if a.database_url:
            have = asyncio.run(rolls_in(a.database_url))
            loaded = asyncio.run(
                load_rolls(
                    a.database_url, max(a.rolls, have), a.fields, have=have, progress=self.say
                )
            )
            return (
                a.database_url,
                lambda db: _with_database(a.database_url, db),
                None,
                loaded.value_count,
                loaded.record_bytes,
            )
        dataset = BenchDataset()
        self.say(f"dataset: embedded PostgreSQL in {dataset.directory}, {a.rolls} rolls wanted")
        self.stack.callback(dataset.stop)
        loaded = dataset.start(a.rolls, a.fields, fresh=a.fresh_dataset, progress=self.say)
        self.say(
            f"dataset: {loaded.rolls} rolls ({loaded.added} loaded now in {loaded.seconds:.1f} s), "
            f"{loaded.value_count} values, {loaded.record_bytes} B each"
        )
        server = dataset.server
        postmaster = server.postmaster_pid()
        reader = None
        if postmaster is not None:

            def reader():
                return cpu_seconds(process_tree(postmaster))

            if a.pin:  # backends forked later inherit the postmaster's affinity
                for pid in process_tree(postmaster):
                    os.sched_setaffinity(pid, {LOADER_CPU})
        return server.dsn, server.dsn_for, reader, loaded.value_count, loaded.record_bytes

    def section(self, key: str, fn: Callable[[], tuple[list[Row], list[str]]]) -> None:
        """Run one benchmark; a failure becomes a row saying so, and the others go on."""
        try:
            rows, notes = fn()
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            self.say(f"{key}: FAILED: {exc}")
            detail = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
            rows = [Row(key, "FAILED", detail=f"{type(exc).__name__}: {detail}")]
            tb = traceback.format_exc().rstrip().splitlines()
            notes = [f"WARNING: {key} failed: {exc}", *(f"  {line}" for line in tb[-12:])]
        self.rows[key] = rows
        self.notes += notes


def _with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + database))


def lag_rows(r: LagResult) -> list[Row]:
    s = r.seen
    udp99, web99 = quantile(s.udp_ms, 0.99), quantile(s.http_ms, 0.99)
    base = (
        f"{r.writes} writes, PUT via A p50 {quantile(s.put_ms, 0.5):.1f} ms; "
        f"{s.failures} not seen within 5 s"
    )
    return [
        Row(
            "4 lag",
            "A's write acked -> B shows it, UDP",
            None,
            quantile(s.udp_ms, 0.5),
            udp99,
            goal=f"p99<={LAG_GOAL_MS:g}ms",
            ok=udp99 <= LAG_GOAL_MS and not s.failures,
            detail=f"{base}; {s.before_ack} already shown by the ack; {s.polls} polls",
        ),
        Row(
            "4 lag",
            "A's write acked -> B shows it, HTTP",
            None,
            quantile(s.http_ms, 0.5),
            web99,
            goal=f"p99<={LAG_GOAL_MS:g}ms",
            ok=web99 <= LAG_GOAL_MS and not s.failures,
            detail=f"B's cache hits {r.b_hits:.0f}, invalidations {r.b_invalidations:.0f}",
        ),
        Row(
            "4 lag",
            "B's NOTIFY lag (its own histogram)",
            None,
            r.node_lag_p50_ms,
            r.node_lag_p99_ms,
            detail=f"{r.node_lag_count:.0f} notifications; interpolated in buckets 1/2.5/5/10/25/50 ms",
        ),
    ]


def run(args: argparse.Namespace, stack: ExitStack) -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    bench = Bench(args, stack)
    run_at = datetime.now(UTC).isoformat(timespec="seconds")
    if {"http", "workers", "miss"} & set(args.benches) and shutil.which("wrk") is None:
        raise BenchError(
            "wrk not found (apt-get install wrk); or leave out http,workers,miss with --skip"
        )
    if args.pin and (os.cpu_count() or 1) < 2:
        raise BenchError("--pin needs at least 2 CPUs")
    loader = build_udpload()
    busy = machine_busy()
    dsn, dsn_for, pg_cpu, value_count, record_bytes = bench.registry()
    plan = UdpPlan(
        loader=loader,
        dsn=dsn,
        keys=args.rolls,
        value_count=value_count,
        seconds=args.seconds,
        warmup=args.warmup,
        window=args.window,
        sockets=args.sockets,
        pin=args.pin,
        hot=args.hot,
        zipf_s=args.zipf_s,
        postgres_cpu=pg_cpu,
        progress=bench.say,
    )
    chosen = set(args.benches)
    if "udp" in chosen:

        def udp() -> tuple[list[Row], list[str]]:
            result = udp_hits(plan)
            bench.floor_rate = result.floor_rate
            return result.rows, result.notes

        bench.section("1 udp hit", udp)
    if "http" in chosen:
        bench.section("2 http hit", lambda: http_hits(plan))
    if "workers" in chosen:

        def workers() -> tuple[list[Row], list[str]]:
            u_rows, u_notes = udp_workers(plan)
            h_rows, h_notes = http_workers(plan)
            return u_rows + h_rows, u_notes + h_notes

        bench.section("6 workers", workers)
    if "zipf" in chosen:
        bench.section("3 zipf", lambda: udp_zipf(plan, bench.floor_rate))
    if {"miss", "memory"} & chosen:
        bench.section(
            "3 miss",
            lambda: miss_and_memory(
                replace(plan, keys=args.memory_records), bench.floor_rate, fill="memory" in chosen
            ),
        )
    if "miss" in chosen:
        bench.section("3 miss http", lambda: http_miss(plan))
    if "lag" in chosen:
        admin = dsn
        bench.section(
            "4 lag",
            lambda: (lag_rows(run_lag(admin, dsn_for, args.lag_writes, progress=bench.say)), []),
        )

    order = ["1 udp hit", "2 http hit", "3 miss", "3 miss http", "3 zipf", "4 lag", "6 workers"]
    rows = [r for key in order for r in bench.rows.get(key, [])]
    rows.sort(key=lambda r: r.bench[:1])  # 3 miss's memory row (5) after 4 lag, stable otherwise
    pinned = (
        f"yes (servers CPU 1, loaders + PostgreSQL CPU {LOADER_CPU}; workers rows unpinned)"
        if args.pin
        else "no"
    )
    print()
    print(
        f"# {run_at}  nproc={os.cpu_count()}  python={platform.python_version()}  pinned={pinned}  "
        f"busy before start={100 * busy:.0f}% of all CPUs  total {time.monotonic() - bench.started:.0f} s"
    )
    print(
        f"# records={args.rolls} ({value_count} values, {record_bytes} B wire each; miss/memory node: "
        f"{args.memory_records})  seconds={args.seconds:g} "
        f"(after {args.warmup:g} s warm-up)  udp window={args.window} sockets={args.sockets}  "
        f"hot set={args.hot}  zipf s={args.zipf_s:g}  wrk -t1 -c64 keep-alive"
    )
    for line in format_table(rows):
        print(line)
    for note in bench.notes:
        print(f"# {note}")
    settings = (
        f"quick={int(args.quick)} pin={int(args.pin)} rolls={args.rolls} "
        f"memory_records={args.memory_records} seconds={args.seconds:g}"
    )
    append_csv(CSV_PATH, run_at, settings, rows)
    return 1 if any(n.startswith("WARNING") for n in bench.notes) else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_bench("cache_bench", lambda stack: run(args, stack))


if __name__ == "__main__":
    sys.exit(main())
