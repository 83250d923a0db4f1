"""The soak (loadtest/soak.py) end to end for 15 seconds, samples every 5: a real node
on its own embedded PostgreSQL, capacity measured, the paced mix, a row per sample and
the verdict; then its arithmetic on fixed inputs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from loadtest.soak import (
    FD_SLOPE,
    HEAD,
    MIX,
    RSS_SLOPE_MIB,
    Sample,
    judge,
    slope_per_minute,
)

REPO = Path(__file__).resolve().parents[2]
ROW = re.compile(r"^\s+(\d+)" + r"\s+([\d.]+)" * 10 + r"$")


def test_a_short_soak_prints_its_table_and_verdict(tmp_path: Path) -> None:
    csv = tmp_path / "soak.csv"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "loadtest.soak",
            "--seconds",
            "15",
            "--sample-seconds",
            "5",
            "--capacity-seconds",
            "2",
            "--write-handles",
            "50",
            "--csv",
            str(csv),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = result.stdout.splitlines()
    assert result.returncode in (0, 1), result.stderr[-3000:]
    assert out[0].startswith("# ") and "nproc=" in out[0], result.stdout
    assert re.search(r"# capacity \d+ req/s .* soak at 70% = \d+ req/s", out[1]), out[1]
    header = out.index(HEAD)
    rows = [ROW.match(line) for line in out[header + 2 : header + 5]]
    assert all(rows), out
    times = [int(m[1]) for m in rows if m]
    assert times == [5, 10, 15]
    for m in rows:
        assert m is not None
        reads, writes, errors, rss, fds = (
            float(m[2]),
            float(m[3]),
            int(m[8]),
            float(m[9]),
            int(m[10]),
        )
        assert reads > 0 and writes > 0 and rss > 10 and fds > 10, m[0]
        assert errors == 0, result.stdout  # 70 % of capacity: the node answers everything
    verdict = out[-1]
    assert verdict.startswith("# verdict: ") and "errors 0" in verdict, result.stdout
    assert result.returncode == (0 if verdict.startswith("# verdict: ok") else 1)
    assert len(csv.read_text().splitlines()) == 1 + 3  # its header and a line per sample


def test_the_mix_and_the_slope() -> None:
    assert (MIX.count("u"), MIX.count("g"), MIX.count("P")) == (9, 9, 2)
    assert slope_per_minute([0, 10, 20, 30], [5, 5, 5, 5]) == 0.0
    assert slope_per_minute([0, 30, 60], [1, 2, 3]) == 2.0  # +1 per 30 s
    assert abs(slope_per_minute([0, 10, 20, 30], [1, 3, 2, 4]) - 4.8) < 1e-9
    assert slope_per_minute([5], [1]) == 0.0


def _samples(rss: list[float], fds: list[int]) -> list[Sample]:
    return [
        Sample(10.0 * (i + 1), 100, 10, 1, 2, 3, 4, 0, r, f, 50.0)
        for i, (r, f) in enumerate(zip(rss, fds, strict=True))
    ]


def test_the_verdict_judges_the_second_half() -> None:
    # Growth in the first half (warming up) does not count; a flat second half is ok.
    flat = judge(_samples([10, 20, 30, 40, 40, 40, 40, 40], [9, 12, 15, 20, 20, 20, 20, 20]), 0)
    assert flat.ok and flat.samples_used == 4 and flat.rss_slope == 0.0
    assert flat.line().startswith("verdict: ok ")
    # 1 MiB per 10 s is 6 MiB per minute: growth; one fd more per sample likewise.
    leak = judge(_samples([40, 41, 42, 43, 44, 45], [20, 20, 20, 21, 22, 23]), 0)
    assert leak.rss_slope > RSS_SLOPE_MIB and leak.fd_slope > FD_SLOPE and not leak.ok
    assert leak.line().startswith("verdict: GROWTH ")
    errors = judge(_samples([40] * 4, [20] * 4), 3)
    assert not errors.ok and errors.line().startswith("verdict: ERRORS ")
    assert errors.line().endswith("errors 3")
    both = judge(_samples([40, 41, 42, 43], [20] * 4), 1)
    assert both.line().startswith("verdict: GROWTH+ERRORS ")
