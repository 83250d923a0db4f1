"""The bulk import benchmark end to end at a tiny size (the real run imports a million
rows: loadtest/bulk_import.py): its CSV is a valid import, the floor COPYs, a real
``idnode serve`` answers the reader, a real ``idnode import`` loads every row, and the
table has every figure."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from loadtest.bulk_import import HEADER, measure, roll_row, write_csv
from node.templates.shipped import ROLL

ROWS = 300


def test_rows_follow_the_roll_template(tmp_path: Path) -> None:
    path = tmp_path / "rolls.csv"
    write_csv(path, 50)
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == HEADER and len(rows) == 51
    for row in rows[1:]:
        assert ROLL.problems(ROLL.record(dict(zip(HEADER[1:], row[1:], strict=True)))) == []
    assert len({r[0] for r in rows[1:]}) == 50 and roll_row(7)[0].endswith("-0000007")


async def test_benchmark_at_a_tiny_size(database_url: str, pg_server: str, tmp_path: Path) -> None:
    path = tmp_path / "rolls.csv"
    write_csv(path, ROWS)
    args = argparse.Namespace(rows=ROWS, read_rate=40.0, processes=1, idle_seconds=0.5)
    rows = await measure(database_url, pg_server, args, path)
    assert [(r.bench, r.target) for r in rows] == [
        ("a floor", "COPY pre-encoded into handles"),
        ("b import", "idnode import CSV (check+sign+load)"),
        ("c resolve", "cached GET, idle"),
        ("c resolve", "cached GET, import"),
        ("c resolve", "uncached GET, idle"),
        ("c resolve", "uncached GET, import"),
    ]
    floor, imported = rows[0], rows[1]
    assert floor.rate and floor.rate > 0 and imported.rate and imported.rate > 0
    assert imported.ratio == imported.rate / floor.rate
    for r in rows[2:]:
        assert r.p50_ms is not None and r.p99_ms is not None, r
        assert r.detail.endswith(", 0 failed"), r
