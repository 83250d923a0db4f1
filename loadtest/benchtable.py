"""The one table the cache benchmarks print: a row per figure, each with the ratio it
is judged by (against a floor measured in the same run, or another row) and its goal."""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path


@dataclass(frozen=True)
class Row:
    bench: str  # "1 udp hit": the benchmark's number and name
    target: str  # what was measured
    rate: float | None = None  # replies or requests per second
    p50_ms: float | None = None
    p99_ms: float | None = None
    ratio: float | None = None  # against `ratio_of`
    ratio_of: str = ""  # "floor", "w1", ...
    goal: str = ""  # ">=0.65", "p99<=50ms", ...
    ok: bool | None = None  # goal met; None: no goal, or a reference row
    detail: str = ""


def _num(value: float | None, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, spec)


def _verdict(ok: bool | None) -> str:
    return "" if ok is None else ("ok" if ok else "MISS")


_HEAD = (
    f"{'benchmark':<13}{'target':<34}{'per s':>9}{'p50 ms':>9}{'p99 ms':>9}"
    f"{'ratio':>7} {'of':<6}{'goal':<12}{'':<5}detail"
)


def format_table(rows: Iterable[Row]) -> list[str]:
    out = [_HEAD, "-" * len(_HEAD)]
    last = None
    for r in rows:
        bench = r.bench if r.bench != last else ""
        last = r.bench
        out.append(
            f"{bench:<13}{r.target:<34}{_num(r.rate, '.0f'):>9}{_num(r.p50_ms, '.2f'):>9}"
            f"{_num(r.p99_ms, '.2f'):>9}{_num(r.ratio, '.2f'):>7} {r.ratio_of:<6}{r.goal:<12}"
            f"{_verdict(r.ok):<5}{r.detail}".rstrip()
        )
    return out


def append_csv(path: Path, run_at: str, settings: str, rows: Iterable[Row]) -> None:
    names = ["run_at", "settings", *(f.name for f in fields(Row))]
    new = not path.exists()
    with open(path, "a", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=names)
        if new:
            writer.writeheader()
        for r in rows:
            writer.writerow({"run_at": run_at, "settings": settings, **asdict(r)})
