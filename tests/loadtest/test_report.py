"""The performance report's page and plots, from fixed CSVs in the formats the
benchmarks append (cache_bench.csv, sweep.csv, growth.csv): every figure reaches the
page, the plots are the committed size, and a missing growth run is said, not drawn."""

from __future__ import annotations

import struct
from pathlib import Path

from loadtest.benchtable import Row, append_csv
from loadtest.growth import CSV_FIELDS
from loadtest.report import DOC_PNG_MAX_BYTES, build, copy_docs
from loadtest.report_render import GROWTH_PNG, LATENCY_PNG, THROUGHPUT_PNG
from loadtest.sweep import SweepPoint, append_points

RUN = "2026-12-02T16:00:00+00:00"
EARLIER = "2026-12-01T09:00:00+00:00"


def write_inputs(tmp: Path, growth: bool = True) -> tuple[Path, Path, Path]:
    bench, sweep_csv, growth_csv = tmp / "cache_bench.csv", tmp / "sweep.csv", tmp / "growth.csv"
    append_csv(bench, EARLIER, "quick=1", [Row("1 udp hit", "stale row", 1.0)])
    append_csv(
        bench,
        RUN,
        "quick=1",
        [
            Row("1 udp hit", "udp echo (floor)", 40000, 1.1, 2.5, 1.0, "floor"),
            Row(
                "1 udp hit",
                "idnode cache hit (16 hot)",
                27000,
                1.9,
                4.0,
                0.675,
                "floor",
                ">=0.65",
                True,
            ),
            Row("6 workers", "udp cache hit, workers=2", 31000, 1.5, 6.0, 1.15, "w1"),
        ],
    )
    append_points(sweep_csv, EARLIER, "", [SweepPoint("udp", 1, 1.0, 1.0, None, 1.0)])
    points = [
        SweepPoint("udp", w, 3000.0 * min(w, 16), 0.3 * max(1, w / 16), None, 0.9 * max(1, w / 16))
        for w in (1, 4, 16, 64, 256)
    ]
    points += [
        SweepPoint(
            "http",
            c,
            2000.0 * min(c, 8),
            0.5 * max(1, c / 8),
            0.8 * max(1, c / 8),
            1.5 * max(1, c / 8),
        )
        for c in (1, 4, 16, 64, 256)
    ]
    append_points(sweep_csv, RUN, "", points)
    if growth:
        lines = [",".join(CSV_FIELDS)]
        for run_at, front, n, rate, p99, ratio in (
            (EARLIER, "udp", 100_000, 999.0, 99.0, ""),  # superseded by the next row
            (RUN, "udp", 100_000, 2100.0, 40.0, "1.05"),
            (RUN, "udp", 1_000_000, 2000.0, 42.0, "1.0"),
            (RUN, "udp", 10_000_000, 1700.0, 55.0, "0.85"),
            (RUN, "http", 1_000_000, 1500.0, 60.0, "1.0"),
            (RUN, "http-floor", 1_000_000, 3000.0, 20.0, "1.0"),
        ):
            p99_ratio = f"{p99 / 42.0:.3f}" if front == "udp" else "1.0"
            lines.append(
                f"{run_at},quick=1,{front},{n},{rate},10.0,{p99},{ratio},{p99_ratio},"
                f"{n * 700},{n * 710},{n * 90},{n * 45},32MB,0.4,0.97,100,20,,detail"
            )
        growth_csv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return bench, sweep_csv, growth_csv


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    width, height = struct.unpack(">II", data[16:24])  # IHDR, the first chunk
    return width, height


def test_the_page_shows_the_last_runs_and_small_plots(tmp_path: Path) -> None:
    bench, sweep_csv, growth_csv = write_inputs(tmp_path)
    page, pngs, data = build(tmp_path / "report", bench, sweep_csv, growth_csv)

    assert sorted(p.name for p in pngs) == sorted([THROUGHPUT_PNG, LATENCY_PNG, GROWTH_PNG])
    for png in pngs:
        assert png.parent == page.parent
        assert png_size(png) == (800, 450)
        assert png.stat().st_size <= DOC_PNG_MAX_BYTES, (png.name, png.stat().st_size)

    text = page.read_text(encoding="utf-8")
    for png in pngs:
        assert f'<img src="{png.name}"' in text
    # The last cache_bench run only, its verdict shown.
    assert "idnode cache hit (16 hot)" in text and "stale row" not in text
    assert "<td class=ok>ok</td>" in text
    # The last sweep only: 5 + 5 points, HTTP with its p90.
    assert data.sweep_run_at == RUN and len(data.sweep) == 10
    assert "<td>6.40</td>" in text  # http -c64: p90 0.8 * 8
    # Growth: the newest row per step; 10M within 20% of 1M on rate but not on p99.
    assert [(p.front, p.identifiers, p.rate) for p in data.growth] == [
        ("http", 1_000_000, 1500.0),
        ("http-floor", 1_000_000, 3000.0),
        ("udp", 100_000, 2100.0),
        ("udp", 1_000_000, 2000.0),
        ("udp", 10_000_000, 1700.0),
    ]
    assert "<td>10M</td><td>1700</td>" in text
    assert "<span class=miss>MISS</span>" in text and "<span class=ok>ok</span>" in text


def test_no_growth_run_is_said_and_not_plotted(tmp_path: Path) -> None:
    bench, sweep_csv, growth_csv = write_inputs(tmp_path, growth=False)
    page, pngs, data = build(
        tmp_path / "report", bench, sweep_csv, growth_csv, problems=["the load sweep failed"]
    )
    assert data.growth == []
    assert GROWTH_PNG not in [p.name for p in pngs]
    assert not (page.parent / GROWTH_PNG).exists()
    text = page.read_text(encoding="utf-8")
    assert "No growth run yet" in text and "python -m loadtest.growth" in text
    assert "Not run: the load sweep failed" in text


def test_docs_copy_flags_a_plot_too_big_to_commit(tmp_path: Path) -> None:
    small, big = tmp_path / "small.png", tmp_path / "big.png"
    small.write_bytes(b"x" * 100)
    big.write_bytes(b"x" * (DOC_PNG_MAX_BYTES + 1))
    warnings = copy_docs([small, big], tmp_path / "docs")
    assert (tmp_path / "docs" / "small.png").read_bytes() == small.read_bytes()
    assert len(warnings) == 1 and warnings[0].startswith("big.png")
