"""The cache's byte estimate against the memory it really takes: 50k records of the
benchmark dataset cached the way a native UDP miss caches them, in a fresh interpreter
(loadtest/memory_inproc.py), their RSS against ``RecordCache.bytes``. The byte bound
(``cache_max_bytes``) is only as honest as this estimate."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[4]
RECORDS = 50_000


def test_the_estimate_tracks_the_rss() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "loadtest.memory_inproc", "--records", str(RECORDS), "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    r = json.loads(out.stdout)
    assert r["records"] == RECORDS
    assert abs(r["estimate_vs_rss"]) <= 0.10, r
    # A record of 573 bytes of values, with its native reply, took 1.34 KB before the
    # clock, the lone shape, the eight slots and the shared expiries; 1.16-1.2 KB since.
    assert r["rss_per_record"] <= 1250, r
