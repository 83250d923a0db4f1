"""HTTP GET /api/handles/{handle} throughput of a real ``idnode serve --demo`` process,
side by side with the floor (a bare aiohttp handler returning the same bytes on the same
loop), both driven by wrk with keep-alive. Prints one table; appends loadtest/out/http_get.csv.

    .venv/bin/python loadtest/http_get.py [--seconds 10] [--connections 64] [--pin]

Needs wrk (apt-get install wrk). After the first GET every request is a cache hit: the
node answers it from the connection (its fast lane), and with ``VIA_AIOHTTP`` sent along
through aiohttp's request handling, the same kept bytes.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loadtest.harness import OUT, Child, node_env, taskset

HANDLE = "88.118.2/ROLL-2026-000123"
_READY = re.compile(r"ready: .* http=(\d+)")
_FLOOR = re.compile(r"floor ready port=(\d+)")
_RATE = re.compile(r"Requests/sec:\s+([\d.]+)")


# A precondition the node's fast lane leaves to aiohttp and the REST API ignores: with it
# a cache hit takes the aiohttp path (router, middlewares, web.Response), same bytes.
VIA_AIOHTTP = "If-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT"


def wrk(
    url: str, seconds: int, connections: int, cpu: int | None, headers: Sequence[str] = ()
) -> dict[str, float]:
    extra = [arg for header in headers for arg in ("-H", header)]
    out = subprocess.run(
        [
            *taskset(cpu),
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            *extra,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    ).stdout
    rate = float(_RATE.search(out).group(1))  # type: ignore[union-attr]

    def pct(p: str) -> float:
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)", out, re.MULTILINE)
        if not m:
            return float("nan")
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rate": rate,
        "p50": pct("50"),
        "p99": pct("99"),
        "non2xx": float(errors.group(1)) if errors else 0.0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--pin", action="store_true", help="servers on CPU 1, wrk on CPU 0")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk not found: apt-get install wrk", file=sys.stderr)
        return 2
    OUT.mkdir(parents=True, exist_ok=True)
    server_cpu, load_cpu = (1, 0) if args.pin else (None, None)
    base = Path(tempfile.mkdtemp(prefix="idnode-http-bench-"))
    base.chmod(0o711)  # the embedded PostgreSQL runs as another user when we are root
    children: list[Child] = []
    try:
        node = Child(
            "idnode",
            [
                *taskset(server_cpu),
                sys.executable,
                "-m",
                "node.cli",
                "serve",
                "--demo",
                "--data-dir",
                str(base / "data"),
                "--http-port",
                "0",
                "--handle-port",
                "0",
                "--admin-port",
                "0",
            ],
            OUT / "http_get_node.log",
            node_env(),
        )
        children.append(node)
        port = int(node.wait_for_line(_READY, 120).group(1))
        url = f"http://127.0.0.1:{port}/api/handles/{HANDLE}"
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = resp.read()
        assert b'"responseCode":1' in body.replace(b" ", b""), body[:200]
        (base / "body.json").write_bytes(body)
        floor = Child(
            "floor",
            [
                *taskset(server_cpu),
                sys.executable,
                str(Path(__file__).with_name("http_floor.py")),
                "--body-file",
                str(base / "body.json"),
            ],
            OUT / "http_get_floor.log",
            node_env(),
        )
        children.append(floor)
        floor_port = int(floor.wait_for_line(_FLOOR, 30).group(1))

        wrk(url, 2, args.connections, load_cpu)  # warm-up
        results = {
            "aiohttp fixed bytes (floor)": wrk(
                f"http://127.0.0.1:{floor_port}/x", args.seconds, args.connections, load_cpu
            ),
            "idnode GET hit (fast lane)": wrk(url, args.seconds, args.connections, load_cpu),
            "idnode GET hit (aiohttp path)": wrk(
                url, args.seconds, args.connections, load_cpu, [VIA_AIOHTTP]
            ),
        }
    finally:
        for child in children:
            child.stop()
        shutil.rmtree(base, ignore_errors=True)

    floor_rate = results["aiohttp fixed bytes (floor)"]["rate"]
    now = datetime.now(UTC).isoformat(timespec="seconds")
    print(
        f"\n# {now}  nproc={os.cpu_count()}  wrk -t1 -c{args.connections} -d{args.seconds}s keep-alive"
        f"  pinned={'yes' if args.pin else 'no'}  body={len(body)} B  handle={HANDLE}"
    )
    print(f"{'target':<30}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'non-2xx':>9}{'vs floor':>10}")
    with (OUT / "http_get.csv").open("a", newline="") as f:
        w = csv.writer(f)
        for name, r in results.items():
            ratio = r["rate"] / floor_rate if floor_rate else float("nan")
            print(
                f"{name:<30}{r['rate']:>10.0f}{r['p50']:>9.2f}{r['p99']:>9.2f}{r['non2xx']:>9.0f}{ratio:>10.2f}"
            )
            w.writerow(
                [
                    now,
                    name,
                    round(r["rate"]),
                    r["p50"],
                    r["p99"],
                    int(r["non2xx"]),
                    round(ratio, 3),
                    args.connections,
                    args.seconds,
                    args.pin,
                ]
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
