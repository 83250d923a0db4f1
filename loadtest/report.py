"""The performance report: run the quick benchmarks, plot them, write one HTML page.

    .venv/bin/pip install -e '.[load]'                # matplotlib (and locust)
    .venv/bin/python -m loadtest.report               # ~5 min: quick set + load sweep + growth curve
    .venv/bin/python -m loadtest.report --docs        # also refresh the committed plots in docs/perf/
    .venv/bin/python -m loadtest.report --render-only # plot the last runs' CSVs again, run nothing

In order: ``cache_bench --quick`` rows udp, http, miss, zipf and workers (a subprocess;
its rows are read back from loadtest/out/cache_bench.csv); the load sweep
(loadtest/sweep.py: udpload windows and wrk connection counts from 1 to 256, cache
hits, throughput and p50/p90/p99 at each); and the growth curve from the newest rows of
loadtest/out/growth.csv (``python -m loadtest.growth`` makes them; the report does not
run it: its 10M step needs a dataset loaded beforehand). Writes
loadtest/out/report/index.html with the PNGs beside it (docs/performance.md explains the
plots). A part that fails is named at the top of the page; the others still appear.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable as a plain script

from loadtest import sweep
from loadtest.cache_bench import CSV_PATH as BENCH_CSV
from loadtest.growth import CSV_PATH as GROWTH_CSV
from loadtest.harness import OUT, REPO
from loadtest.report_data import ReportData, load_report_data

REPORT_DIR = OUT / "report"
DOCS_DIR = REPO / "docs" / "perf"
DOC_PNG_MAX_BYTES = 60_000
QUICK_SET = "udp,http,miss,zipf,workers"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=REPORT_DIR, help="directory for the page and PNGs")
    p.add_argument("--docs", action="store_true", help=f"copy the PNGs to {DOCS_DIR}")
    p.add_argument(
        "--render-only", action="store_true", help="run nothing; plot the CSVs' last runs"
    )
    p.add_argument("--skip-bench", action="store_true", help="no cache_bench run")
    p.add_argument("--skip-sweep", action="store_true", help="no load sweep")
    p.add_argument("--sweep-seconds", type=float, default=2.0, help="measured run per sweep step")
    p.add_argument("--pin", action="store_true", help="as cache_bench/sweep --pin")
    return p.parse_args(argv)


def machine_line() -> str:
    load = "/".join(f"{x:.2f}" for x in os.getloadavg())
    ram = ""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            kib = next(int(line.split()[1]) for line in f if line.startswith("MemTotal:"))
        ram = f", RAM {kib / (1 << 20):.0f} GiB"
    except (OSError, StopIteration):
        pass
    return (
        f"{platform.node()}: {os.cpu_count()} CPUs{ram}, load average {load} at the end, "
        f"Python {platform.python_version()}"
    )


def say(line: str) -> None:
    print(f"report: {line}", file=sys.stderr, flush=True)


def run_cache_bench(pin: bool) -> tuple[list[str], str | None]:
    """cache_bench --quick on the quick set; (its '#' lines: header and notes, problem)."""
    args = [sys.executable, "-m", "loadtest.cache_bench", "--quick", "--only", QUICK_SET]
    if pin:
        args.append("--pin")
    say(f"running {' '.join(args[1:])} ...")
    try:
        done = subprocess.run(
            args, cwd=REPO, stdout=subprocess.PIPE, text=True, timeout=1800, check=False
        )
    except subprocess.TimeoutExpired:
        return [], "cache_bench did not finish within 30 min"
    sys.stdout.write(done.stdout)
    notes = [line[2:] for line in done.stdout.splitlines() if line.startswith("# ")]
    problem = None
    if done.returncode not in (0, 1):  # 1: a WARNING noted, the rows are there
        problem = f"cache_bench exited with status {done.returncode} (its stderr is above)"
    return notes, problem


def run_sweep(seconds: float, pin: bool) -> str | None:
    """The load sweep (a subprocess, as cache_bench: its points go to sweep.csv)."""
    args = [sys.executable, "-m", "loadtest.sweep", "--seconds", f"{seconds:g}"]
    if pin:
        args.append("--pin")
    say(f"running {' '.join(args[1:])} ...")
    try:
        done = subprocess.run(args, cwd=REPO, timeout=1800, check=False)
    except subprocess.TimeoutExpired:
        return "the load sweep did not finish within 30 min"
    if done.returncode not in (0, 1):
        return f"the load sweep exited with status {done.returncode} (its output is above)"
    return None


def copy_docs(pngs: list[Path], docs: Path = DOCS_DIR) -> list[str]:
    """Copy the PNGs into ``docs``; warnings for any over the size a commit should carry."""
    docs.mkdir(parents=True, exist_ok=True)
    warnings = []
    for png in pngs:
        size = png.stat().st_size
        if size > DOC_PNG_MAX_BYTES:
            warnings.append(f"{png.name} is {size // 1000} KB, over {DOC_PNG_MAX_BYTES // 1000} KB")
        shutil.copyfile(png, docs / png.name)
    return warnings


def build(
    out: Path,
    bench_csv: Path = BENCH_CSV,
    sweep_csv: Path = sweep.CSV_PATH,
    growth_csv: Path = GROWTH_CSV,
    bench_notes: list[str] | None = None,
    problems: list[str] | None = None,
) -> tuple[Path, list[Path], ReportData]:
    """Read the CSVs, render the page and plots into ``out``."""
    from loadtest.report_render import render  # matplotlib: only when a page is made

    generated = datetime.now(UTC).isoformat(timespec="seconds")
    data = load_report_data(generated, machine_line(), bench_csv, sweep_csv, growth_csv)
    data.bench_notes = bench_notes or []
    data.problems = problems or []
    page, pngs = render(data, out)
    return page, pngs, data


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("report: matplotlib is not installed: pip install -e '.[load]'", file=sys.stderr)
        return 2
    began = time.monotonic()
    problems: list[str] = []
    notes: list[str] = []
    bench_started = datetime.now(UTC).isoformat(timespec="seconds")
    if not args.render_only and not args.skip_bench:
        notes, problem = run_cache_bench(args.pin)
        if problem:
            problems.append(problem)
    if not args.render_only and not args.skip_sweep:
        problem = run_sweep(args.sweep_seconds, args.pin)
        if problem:
            problems.append(problem)
    page, pngs, data = build(args.out, bench_notes=notes, problems=problems)
    if not args.render_only and not args.skip_bench and data.bench_run_at < bench_started:
        problems.append("cache_bench wrote no rows in this run: the page shows an earlier run")
        page, pngs, data = build(args.out, bench_notes=notes, problems=problems)
    say(f"wrote {page} and {len(pngs)} plots in {time.monotonic() - began:.0f} s")
    if args.docs:
        for warning in copy_docs(pngs):
            say(f"WARNING: {warning}")
        say(f"copied {', '.join(p.name for p in pngs)} to {DOCS_DIR}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
