"""Start a node with the demo data and bulk rolls, run loadtest/locustfile.py against it
headless for a fixed time, and print locust's summary (its CSVs land in loadtest/out/).

    .venv/bin/python -m loadtest.locust_run                       # 50 users, 30 s, 100k rolls
    .venv/bin/python -m loadtest.locust_run --users 100 --run-time 2m --rolls 1000000 --workers 2

The registry is a throwaway embedded PostgreSQL: ``idnode serve --demo`` seeds the
enterprises, prefixes and demo records (and so the MES user's credentials), then the
rolls are COPYed in (loadtest/bulkload.py). Needs locust (``pip install 'idnode[load]'``).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loadtest.bulkload import load_rolls
from loadtest.harness import OUT, BenchError, harness_sigterm, start_idnode
from loadtest.rolls import embedded_registry

LOCUSTFILE = Path(__file__).with_name("locustfile.py")


def summary(prefix: Path) -> list[str]:
    """The Aggregated line and one line per request name of locust's _stats.csv."""
    path = prefix.with_name(prefix.name + "_stats.csv")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    head = f"{'name':<36}{'requests':>9}{'failures':>9}{'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}"
    lines = [head]
    for r in rows:
        name = f"{r['Type']} {r['Name']}".strip() if r["Name"] != "Aggregated" else "Aggregated"
        lines.append(
            f"{name[:35]:<36}{r['Request Count']:>9}{r['Failure Count']:>9}{float(r['Requests/s']):>8.1f}"
            f"{r['50%']:>8}{r['99%']:>8}{float(r['Max Response Time']):>8.0f}"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=50)
    p.add_argument("--spawn-rate", type=float, default=10)
    p.add_argument("--run-time", default="30s")
    p.add_argument("--rolls", type=int, default=100_000)
    p.add_argument("--workers", type=int, default=1, help="idnode serve --workers")
    p.add_argument("--csv", type=Path, default=OUT / "locust", help="locust --csv prefix")
    args = p.parse_args(argv)
    if (
        shutil.which("locust", path=str(Path(sys.executable).parent)) is None
        and shutil.which("locust") is None
    ):
        print("locust not found: .venv/bin/pip install 'idnode[load]'", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, harness_sigterm)
    OUT.mkdir(parents=True, exist_ok=True)
    data = Path(tempfile.mkdtemp(prefix="idnode-locust-"))
    try:
        with embedded_registry() as server:
            node = start_idnode(
                server.dsn,
                data,
                name="locust_node",
                extra_args=["--demo"],
                extra_env={"IDNODE_WORKERS": str(args.workers)},
                ready_timeout_s=180,
            )
            try:
                print(
                    f"node pid {node.pid} on http {node.http_port} (demo data); loading {args.rolls} rolls ...",
                    file=sys.stderr,
                )
                loaded = asyncio.run(load_rolls(server.dsn, args.rolls))
                print(
                    f"{loaded.rolls} rolls in {loaded.seconds:.1f} s; locust {args.users} users, "
                    f"{args.run_time} ...",
                    file=sys.stderr,
                )
                locust = [
                    sys.executable,
                    "-m",
                    "locust",
                    "-f",
                    str(LOCUSTFILE),
                    "--headless",
                    "-u",
                    str(args.users),
                    "-r",
                    f"{args.spawn_rate:g}",
                    "-t",
                    args.run_time,
                    "--csv",
                    str(args.csv),
                    "--host",
                    f"http://127.0.0.1:{node.http_port}",
                    "--rolls",
                    str(args.rolls),
                    "--only-summary",
                    "--loglevel",
                    "WARNING",
                ]
                result = subprocess.run(
                    locust,
                    check=False,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            finally:
                node.stop()
    except BenchError as exc:
        print(f"locust_run: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("locust_run: interrupted", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(data, ignore_errors=True)
    if result.returncode not in (0, 1):  # 1: some requests failed (shown in the table)
        print(result.stderr[-3000:], file=sys.stderr)
        return result.returncode
    print(
        f"# locust -u {args.users} -r {args.spawn_rate:g} -t {args.run_time}, {args.rolls} rolls, "
        f"node workers={args.workers}; CSVs: {args.csv}_*.csv"
    )
    for line in summary(args.csv):
        print(line)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
