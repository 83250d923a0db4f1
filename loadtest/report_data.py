"""What the performance report shows, read back from the benchmarks' CSVs in
loadtest/out/: the last cache_bench run's rows, the last sweep's points, and the newest
growth figure per front and step. No plotting here (report_render.py does that), so
this reads without matplotlib."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from loadtest.benchtable import Row
from loadtest.sweep import SweepPoint, read_last_points


def _num(text: str | None) -> float | None:
    if text is None or text.strip() in ("", "None", "nan"):
        return None
    return float(text)


def _ok(text: str | None) -> bool | None:
    return {"True": True, "False": False}.get(text or "")


def read_csv(path: Path) -> list[dict[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    except FileNotFoundError:
        return []


def read_bench_run(path: Path) -> tuple[str, list[Row]]:
    """(run_at, rows) of the last run in a cache_bench CSV (benchtable.append_csv)."""
    records = read_csv(path)
    if not records:
        return "", []
    last = records[-1]["run_at"]
    rows = [
        Row(
            r["bench"],
            r["target"],
            _num(r["rate"]),
            _num(r["p50_ms"]),
            _num(r["p99_ms"]),
            _num(r["ratio"]),
            r["ratio_of"],
            r["goal"],
            _ok(r["ok"]),
            r["detail"],
        )
        for r in records
        if r["run_at"] == last
    ]
    return last, rows


@dataclass(frozen=True)
class GrowthPoint:
    front: str
    identifiers: int
    rate: float
    p50_ms: float | None
    p99_ms: float
    rate_vs_1m: float | None
    p99_vs_1m: float | None
    heap_bytes: int
    index_bytes: int
    pkey_bytes: int
    heap_hit_ratio: float | None
    idx_hit_ratio: float | None
    load_rows_per_s: float | None
    run_at: str


def read_growth(path: Path) -> list[GrowthPoint]:
    """The newest row per (front, identifiers) of loadtest/out/growth.csv, so a run of one
    step (say, 10M once its load is done) joins the others' earlier figures."""
    newest: dict[tuple[str, int], dict[str, str]] = {}
    for r in read_csv(path):
        newest[(r["front"], int(r["identifiers"]))] = r
    points = [
        GrowthPoint(
            r["front"],
            int(r["identifiers"]),
            float(r["rate"]),
            _num(r["p50_ms"]),
            float(r["p99_ms"]),
            _num(r["rate_vs_1m"]),
            _num(r["p99_vs_1m"]),
            int(r["heap_bytes"]),
            int(r["index_bytes"]),
            int(r["pkey_bytes"]),
            _num(r["heap_hit_ratio"]),
            _num(r["idx_hit_ratio"]),
            _num(r["load_rows_per_s"]),
            r["run_at"],
        )
        for r in newest.values()
    ]
    return sorted(points, key=lambda p: (p.front, p.identifiers))


@dataclass
class ReportData:
    generated: str  # when the report was made (UTC, ISO)
    machine: str  # one line: CPUs, load, RAM, Python
    bench_run_at: str = ""
    bench_rows: list[Row] = field(default_factory=list)
    bench_notes: list[str] = field(default_factory=list)
    sweep_run_at: str = ""
    sweep: list[SweepPoint] = field(default_factory=list)
    growth: list[GrowthPoint] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # a part that did not run, and why


def load_report_data(
    generated: str, machine: str, bench_csv: Path, sweep_csv: Path, growth_csv: Path
) -> ReportData:
    bench_at, rows = read_bench_run(bench_csv)
    sweep_at, points = read_last_points(sweep_csv)
    return ReportData(
        generated,
        machine,
        bench_run_at=bench_at,
        bench_rows=rows,
        sweep_run_at=sweep_at,
        sweep=points,
        growth=read_growth(growth_csv),
    )
