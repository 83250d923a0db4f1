"""The HTTP parts of the cache benchmarks: ``GET /api/handles/<h>`` cache hits against
the bare aiohttp floor returning the very same bytes (http_floor.py), and
``--workers 2`` against ``--workers 1``; wrk keep-alive drives both (http_get.wrk).

Hits are answered by the connection itself (the fast lane, node/fronts/http/fastlane.py);
the same hits through aiohttp's request handling (``VIA_AIOHTTP``) are measured too, the
figure the fast lane improves on."""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
import urllib.request
from pathlib import Path

from loadtest.benchtable import Row
from loadtest.cache_native import LOADER_CPU, UdpPlan, admin_ports, node
from loadtest.harness import OUT, Child, node_env, sample_sum, scrape_samples, taskset
from loadtest.http_get import VIA_AIOHTTP, wrk
from loadtest.rolls import roll_handle

HTTP_HIT_GOAL = 0.85
HOT = roll_handle(123)
CONNECTIONS = 64
_FLOOR = re.compile(r"floor ready port=(\d+)")


def _row(
    bench: str,
    target: str,
    r: dict[str, float],
    ratio: float | None,
    ratio_of: str,
    goal: str = "",
    ok: bool | None = None,
    detail: str = "",
) -> Row:
    return Row(bench, target, r["rate"], r["p50"], r["p99"], ratio, ratio_of, goal, ok, detail)


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as resp:
        body: bytes = resp.read()
    if b'"responseCode":1' not in body.replace(b" ", b""):
        raise AssertionError(f"{url} did not resolve: {body[:200]!r}")
    return body


def _run_wrk(plan: UdpPlan, url: str, pin: bool, headers: tuple[str, ...] = ()) -> dict[str, float]:
    cpu = LOADER_CPU if pin else None
    seconds = max(1, round(plan.seconds))
    if plan.warmup > 0:
        wrk(url, max(1, round(plan.warmup)), CONNECTIONS, cpu, headers)
    return wrk(url, seconds, CONNECTIONS, cpu, headers)


def _notes(name: str, r: dict[str, float]) -> list[str]:
    return [f"WARNING: {name}: {r['non2xx']:.0f} non-2xx replies"] if r["non2xx"] else []


def http_hits(plan: UdpPlan) -> tuple[list[Row], list[str]]:
    base = Path(tempfile.mkdtemp(prefix="idnode-cache-bench-http-"))
    try:
        with node(plan, "http_hit") as proc:
            url = f"http://127.0.0.1:{proc.http_port}/api/handles/{HOT}"
            body = _fetch(url)
            if _fetch(url) != body:
                raise AssertionError(f"{url} answered two GETs with different bytes")
            (base / "body.json").write_bytes(body)
            plan.progress(f"2 http hit: GET {HOT} ({len(body)} B), wrk -c{CONNECTIONS}")
            before = scrape_samples(proc.admin_port)
            node_r = _run_wrk(plan, url, plan.pin)
            after = scrape_samples(proc.admin_port)
            plan.progress("2 http hit: the same hits through aiohttp (fast lane bypassed)")
            slow_r = _run_wrk(plan, url, plan.pin, (VIA_AIOHTTP,))
        floor = Child(
            "http floor",
            [
                *taskset(plan.server_cpu),
                sys.executable,
                str(Path(__file__).with_name("http_floor.py")),
                "--body-file",
                str(base / "body.json"),
            ],
            OUT / "cache_bench_http_floor.log",
            node_env(),
        )
        try:
            port = int(floor.wait_for_line(_FLOOR, 30).group(1))
            plan.progress(f"2 http hit: aiohttp floor pid {floor.pid}, same bytes")
            floor_r = _run_wrk(plan, f"http://127.0.0.1:{port}/x", plan.pin)
        finally:
            floor.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)

    def delta(name: str) -> float:
        return sample_sum(after, name, front="http") - sample_sum(before, name, front="http")

    hits, requests = delta("idnode_cache_hits_total"), delta("idnode_requests_total")
    fast = sample_sum(after, "idnode_http_fast_lane_replies_total") - sample_sum(
        before, "idnode_http_fast_lane_replies_total"
    )
    ratio = node_r["rate"] / (floor_r["rate"] or 1.0)
    rows = [
        _row(
            "2 http hit",
            "aiohttp same bytes (floor)",
            floor_r,
            1.0,
            "floor",
            detail=f"body {len(body)} B",
        ),
        _row(
            "2 http hit",
            "idnode GET cache hit",
            node_r,
            ratio,
            "floor",
            f">={HTTP_HIT_GOAL}",
            ratio >= HTTP_HIT_GOAL,
            f"{100 * hits / max(1.0, requests):.1f}% of {requests:.0f} GETs were cache hits, "
            f"{100 * fast / max(1.0, requests):.1f}% by the fast lane",
        ),
        _row(
            "2 http hit",
            "idnode GET cache hit, aiohttp path",
            slow_r,
            slow_r["rate"] / (floor_r["rate"] or 1.0),
            "floor",
            detail="fast lane bypassed (If-Modified-Since)",
        ),
    ]
    notes = _notes("http floor", floor_r) + _notes("http hit", node_r)
    return rows, notes + _notes("http hit, aiohttp path", slow_r)


def http_workers(plan: UdpPlan) -> tuple[list[Row], list[str]]:
    rows, notes, rates = [], [], {}
    for workers in (1, 2):
        with node(plan, f"http_w{workers}", workers=workers, pin=False) as proc:
            url = f"http://127.0.0.1:{proc.http_port}/api/handles/{HOT}"
            _fetch(url)
            plan.progress(f"6 workers: http hits, workers={workers}")
            r = _run_wrk(plan, url, pin=False)
            split = ""
            if workers > 1:
                ports = admin_ports(proc, workers)
                per = [
                    sample_sum(scrape_samples(p), "idnode_cache_hits_total", front="http")
                    for p in ports
                ]
                split = "hits per worker " + "/".join(
                    f"{100 * x / max(1.0, sum(per)):.0f}%" for x in per
                )
        rates[workers] = r["rate"]
        rows.append(
            _row(
                "6 workers",
                f"http cache hit, workers={workers}",
                r,
                r["rate"] / (rates[1] or 1.0),
                "w1",
                detail=split,
            )
        )
        notes += _notes(f"http workers={workers}", r)
    return rows, notes
