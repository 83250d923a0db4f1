"""Native UDP resolution throughput of a real ``idnode serve`` process, side by side with
the floor (a bare uvloop UDP echo), driven by the same C load generator with the same
requests, window and duration. Prints one table; appends it to loadtest/out/native_udp.csv.

    .venv/bin/python loadtest/native_udp.py [--seconds 10] [--identifiers 10000]
        [--window 64] [--hot K] [--pin] [--profile] [--database-url URL]

What runs: udpblast (built from loadtest/udpblast.c) -> 127.0.0.1 -> the node's
UDP front -> resolver -> registry (PostgreSQL, one indexed read per request: no cache
yet) -> reply. Every request resolves a seeded textile-roll identifier; before
measuring, one is resolved with node.client.native.NativeClient and checked (RC 1, all
values), and after it the node's own counters must show RC 1 for the replies. See
loadtest/README.md for how to read the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import importlib.util
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable as a plain script

from loadtest.harness import (
    DEFAULT_UDPBLAST_SRC,
    OUT,
    BenchError,
    BlastResult,
    build_udpblast,
    children_cpu_seconds,
    cpu_seconds,
    machine_busy,
    process_tree,
    run_bench,
    run_udpblast,
    scrape,
    start_echo,
    start_node,
    udp_outcomes,
)
from loadtest.pyspy import Load, profile_node
from loadtest.rolls import MAX_FIELDS, NODE_PREFIX, embedded_registry, roll_handle, seed_rolls
from node.client.native import NativeClient
from protocol.bodies import ResolutionReply, ResolutionRequest
from protocol.codes import OpCode, OpFlag, ResponseCode
from protocol.fragment import fragment_encoded
from protocol.message import Envelope, Header, Message, encode

MAX_REQUEST_LINES = 4096  # udpblast reads at most this many
REFERENCE_NOTE = (
    "reference Java Handle server on this machine class: ~82-97k/s, p99 ~2 ms "
    "(docs/figures.md), not measured here"
)
CSV_PATH = OUT / "native_udp.csv"
CSV_FIELDS = (
    "run_at",
    "target",
    "replies_per_s",
    "p50_ms",
    "p99_ms",
    "lost",
    "replies",
    "seconds",
    "vs_floor",
    "window",
    "identifiers",
    "distinct_handles",
    "fields",
    "reply_datagrams",
    "pinned",
    "nproc",
    "python",
    "loop",
    "busy_before",
    "cpu_us_per_reply",
)
# What the reference client sends (docs/protocol.md): RECU | CACR | PUBL.
REQUEST_FLAGS = OpFlag.RECU | OpFlag.CACR | OpFlag.PUBL
SERVER_CPU, LOADER_CPU = 1, 0


@dataclass(frozen=True)
class Measured:
    result: BlastResult
    cpu_s: dict[str, float]  # CPU seconds per party during the measured run (not warm-up)

    def cpu_us_per_reply(self) -> dict[str, float]:
        return {k: 1e6 * v / max(1, self.result.replies) for k, v in self.cpu_s.items()}


@dataclass(frozen=True)
class Row:
    target: str
    run: Measured
    vs_floor: float


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=10.0, help="measured run per target")
    p.add_argument("--warmup", type=float, default=2.0, help="discarded run before each")
    p.add_argument("--identifiers", type=int, default=10000, help="roll identifiers seeded")
    p.add_argument("--window", type=int, default=64, help="requests udpblast keeps in flight")
    p.add_argument(
        "--hot",
        type=int,
        default=None,
        metavar="K",
        help="draw requests from K distinct handles only (default: all, at most 4096)",
    )
    p.add_argument(
        "--fields",
        type=int,
        default=10,
        help=f"template fields per roll, 0-{MAX_FIELDS} (10: a ~700-byte reply, 2 datagrams)",
    )
    p.add_argument(
        "--pin",
        action="store_true",
        help=f"servers on CPU {SERVER_CPU}; udpblast and embedded PostgreSQL on CPU {LOADER_CPU}",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="after measuring, py-spy the node under the same load",
    )
    p.add_argument("--profile-seconds", type=float, default=8.0)
    p.add_argument("--database-url", help="use this PostgreSQL instead of a temporary embedded one")
    p.add_argument(
        "--signed", action="store_true", help="seed records carrying an HS_SIGNATURE value"
    )
    p.add_argument("--udpblast-src", type=Path, default=DEFAULT_UDPBLAST_SRC)
    p.add_argument("--seed", type=int, default=1, help="random seed for the request mix")
    args = p.parse_args(argv)
    if not 1 <= args.identifiers <= 9_999_999:
        p.error("--identifiers must be 1..9999999")
    if args.hot is not None and not args.hot >= 1:
        p.error("--hot must be at least 1")
    if not 0 <= args.fields <= MAX_FIELDS:
        p.error(f"--fields must be 0..{MAX_FIELDS}")
    if args.seconds <= 0 or args.warmup < 0 or not 1 <= args.window <= 4096:
        p.error("--seconds must be > 0, --warmup >= 0, --window 1..4096")
    return args


# -- requests ------------------------------------------------------------------------


def pick_rolls(identifiers: int, hot: int | None, rng: random.Random) -> list[int]:
    """Roll numbers for the request file: uniform over the hot set (all rolls by
    default); distinct when the hot set is at least the file's size."""
    hot_set = rng.sample(range(identifiers), min(hot or identifiers, identifiers))
    if len(hot_set) >= MAX_REQUEST_LINES:
        return hot_set[:MAX_REQUEST_LINES]
    return [rng.choice(hot_set) for _ in range(MAX_REQUEST_LINES)]


def resolution_request(handle: str, types: tuple[str, ...] = ()) -> bytes:
    # Request id 1: udpblast rewrites it (envelope offset 8, 4 bytes) per request.
    header = Header(OpCode.RESOLUTION, flags=REQUEST_FLAGS, expiration=int(time.time()) + 43_200)
    return encode(Message(Envelope(request_id=1), header, ResolutionRequest(handle, (), types)))


def write_requests(path: Path, rolls: list[int]) -> None:
    path.write_text("".join(resolution_request(roll_handle(n)).hex() + "\n" for n in rolls))


# -- checks --------------------------------------------------------------------------


async def check_resolution(port: int, handle: str, values: int) -> int:
    """Resolve one seeded handle the way a client would; return the reply's datagrams."""
    reply = await NativeClient("127.0.0.1", port, timeout_s=5.0).resolve(handle)
    rc = reply.header.response_code
    if rc != ResponseCode.SUCCESS or not isinstance(reply.body, ResolutionReply):
        raise BenchError(
            f"resolving {handle} gave RC {rc}, not 1: the node is not serving the seed"
        )
    if len(reply.body.values) != values:
        raise BenchError(f"{handle} came back with {len(reply.body.values)} values, not {values}")
    return len(fragment_encoded(encode(reply)))


def lost_note(name: str, result: BlastResult, window: int) -> str | None:
    # udpblast writes the whole window off as lost after 0.2 s without a reply, so any
    # loss means a stall of at least that long or datagrams dropped on the way.
    if result.lost == 0:
        return None
    share = result.lost / max(1, result.replies + result.lost)
    severity = "WARNING" if share > 0.001 or result.lost > window else "note"
    return f"{severity}: {name}: udpblast lost {result.lost} requests ({100 * share:.3f}%)"


# -- measuring -------------------------------------------------------------------------


def measure(
    blast: Path,
    port: int,
    requests: Path,
    args: argparse.Namespace,
    parties: dict[str, Callable[[], float]],
) -> Measured:
    """A warm-up run (discarded), then the measured run, with the CPU time each party
    (a function returning its cumulative CPU seconds) spent in the measured run."""
    cpu = LOADER_CPU if args.pin else None
    if args.warmup > 0:
        run_udpblast(blast, port, requests, args.warmup, args.window, cpu)
    parties = {**parties, "udpblast": children_cpu_seconds}
    before = {name: read() for name, read in parties.items()}
    result = run_udpblast(blast, port, requests, args.seconds, args.window, cpu)
    return Measured(result, {name: read() - before[name] for name, read in parties.items()})


def cpu_parts(m: Measured) -> str:
    return " + ".join(f"{k} {v:.0f}" for k, v in m.cpu_us_per_reply().items())


# -- reporting -----------------------------------------------------------------------

_HEAD = f"{'target':<22}{'replies/s':>10}{'p50 ms':>10}{'p99 ms':>9}{'lost':>7}{'vs floor':>11}"


def table(rows: list[Row]) -> list[str]:
    out = [_HEAD]
    for r in rows:
        b = r.run.result
        out.append(
            f"{r.target:<22}{b.rate:>10.0f}{b.p50_ms:>10.2f}{b.p99_ms:>9.2f}{b.lost:>7d}{r.vs_floor:>11.2f}"
        )
    return out


# -- the run -----------------------------------------------------------------------------


def run(args: argparse.Namespace, stack: ExitStack) -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    run_at = datetime.now(UTC).isoformat(timespec="seconds")
    blast = build_udpblast(args.udpblast_src, OUT / "udpblast")
    busy_before = machine_busy()
    server_cpu = SERVER_CPU if args.pin else None
    if args.pin and (os.cpu_count() or 1) < 2:
        raise BenchError("--pin needs at least 2 CPUs")

    postgres_cpu: dict[str, Callable[[], float]] = {}
    if args.database_url:
        dsn, registry_kind = args.database_url, "external"
    else:
        print("starting embedded PostgreSQL ...", file=sys.stderr)
        server = stack.enter_context(embedded_registry())
        dsn, registry_kind = server.dsn, "embedded"
        postmaster = server.postmaster_pid()
        if postmaster is not None:  # its backends come and go: list them at each reading
            postgres_cpu["postgres"] = lambda: cpu_seconds(process_tree(postmaster))
            if args.pin:
                # Off the node's CPU, so the node has one to itself as the echo floor does;
                # backends forked later inherit the postmaster's affinity.
                for pid in process_tree(postmaster):
                    os.sched_setaffinity(pid, {LOADER_CPU})
    seeded = asyncio.run(seed_rolls(dsn, args.identifiers, args.fields, signed=args.signed))
    print(
        f"seeded {seeded.count} rolls in {seeded.seconds:.1f} s "
        f"({seeded.value_count} values, {seeded.record_bytes} B each)",
        file=sys.stderr,
    )

    rolls = pick_rolls(args.identifiers, args.hot, random.Random(args.seed))
    requests = OUT / "native_udp_requests.hex"
    write_requests(requests, rolls)
    distinct = len(set(rolls))

    node_dir = Path(tempfile.mkdtemp(prefix="idnode-bench-node-"))  # its site key lives here
    stack.callback(shutil.rmtree, node_dir, ignore_errors=True)
    node, port, admin = start_node(dsn, node_dir, NODE_PREFIX, server_cpu)
    stack.callback(node.stop)
    datagrams = asyncio.run(check_resolution(port, roll_handle(rolls[0]), seeded.value_count))
    print(
        f"node pid {node.pid} on udp {port}: {roll_handle(rolls[0])} resolves, RC 1, "
        f"{seeded.value_count} values, {datagrams} datagram(s); measuring ...",
        file=sys.stderr,
    )

    before = scrape(admin)
    node_run = measure(
        blast, port, requests, args, {"idnode": lambda: cpu_seconds([node.pid]), **postgres_cpu}
    )
    node_result = node_run.result
    rcs, drops = udp_outcomes(before, scrape(admin))
    profile: list[str] = []
    if args.profile:
        load = Load(blast, port, requests, args.window, LOADER_CPU if args.pin else None)
        profile = profile_node(node.pid, load, args.profile_seconds)
    node.stop()

    echo, echo_port, echo_loop = start_echo(server_cpu)
    stack.callback(echo.stop)
    print(
        f"echo floor pid {echo.pid} on udp {echo_port} ({echo_loop}); measuring ...",
        file=sys.stderr,
    )
    floor_run = measure(blast, echo_port, requests, args, {"echo": lambda: cpu_seconds([echo.pid])})
    floor_result = floor_run.result
    echo.stop()

    floor_rate = floor_result.rate or 1.0
    report = Report(
        run_at=run_at,
        busy_before=busy_before,
        pinned=args.pin,
        registry_kind=registry_kind,
        echo_loop=echo_loop,
        distinct=distinct,
        datagrams=datagrams,
        rows=[
            Row("udp echo (floor)", floor_run, 1.0),
            Row("idnode resolution", node_run, node_result.rate / floor_rate),
        ],
        rcs=rcs,
        drops=drops,
        profile=profile,
    )
    problems = report.print(args)
    report.append_csv(args)
    return 1 if any(p.startswith("WARNING") for p in problems) else 0


@dataclass
class Report:
    run_at: str
    busy_before: float
    pinned: bool
    registry_kind: str
    echo_loop: str
    distinct: int
    datagrams: int
    rows: list[Row]  # floor first
    rcs: Counter[str]
    drops: Counter[str]
    profile: list[str]
    loop_kind: str = field(
        default_factory=lambda: "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    )

    def print(self, args: argparse.Namespace) -> list[str]:
        """Print the header, the table and the notes; return the problems noted."""
        floor, node = self.rows
        pinned = "no"
        if self.pinned:
            beside = " + embedded PostgreSQL" if self.registry_kind == "embedded" else ""
            pinned = f"yes (servers CPU {SERVER_CPU}, udpblast{beside} CPU {LOADER_CPU})"
        print()
        print(
            f"# {self.run_at}  nproc={os.cpu_count()}  python={platform.python_version()}  "
            f"loop={self.loop_kind} (echo: {self.echo_loop})  pinned={pinned}  "
            f"busy before start={100 * self.busy_before:.0f}% of all CPUs"
        )
        print(
            f"# seconds={args.seconds:g} (after {args.warmup:g} s warm-up)  "
            f"window={args.window}  identifiers={args.identifiers}  "
            f"distinct handles in requests={self.distinct}  fields={args.fields}  "
            f"reply={self.datagrams} datagram(s)  registry={self.registry_kind} PostgreSQL"
        )
        for line in table(self.rows):
            print(line)
        print(f"# {REFERENCE_NOTE}")
        other = {rc: n for rc, n in self.rcs.items() if rc != "1"}
        print(
            f"# node counted {sum(self.rcs.values())} UDP resolutions in the warm-up + run: "
            f"{self.rcs.get('1', 0)} RC 1"
            + (f", others {other}" if other else "")
            + (f"; dropped {dict(self.drops)}" if self.drops else "; none dropped")
        )
        print(
            f"# CPU µs per reply in the measured runs: idnode run: {cpu_parts(node.run)}; "
            f"floor run: {cpu_parts(floor.run)}"
        )
        problems = [
            note
            for note in (
                lost_note("idnode", node.run.result, args.window),
                lost_note("echo", floor.run.result, args.window),
            )
            if note
        ]
        if other:
            problems.append(f"WARNING: replies other than RC 1: {other}")
        for line in problems:
            print(f"# {line}")
        for line in self.profile:
            print(f"# profile: {line}")
        return problems

    def append_csv(self, args: argparse.Namespace) -> None:
        new = not CSV_PATH.exists()
        with open(CSV_PATH, "a", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
            if new:
                writer.writeheader()
            for r in self.rows:
                b = r.run.result
                writer.writerow(
                    {
                        "run_at": self.run_at,
                        "target": r.target,
                        "replies_per_s": round(b.rate),
                        "p50_ms": b.p50_ms,
                        "p99_ms": b.p99_ms,
                        "lost": b.lost,
                        "replies": b.replies,
                        "seconds": b.seconds,
                        "vs_floor": round(r.vs_floor, 3),
                        "window": args.window,
                        "identifiers": args.identifiers,
                        "distinct_handles": self.distinct,
                        "fields": args.fields,
                        "reply_datagrams": self.datagrams,
                        "pinned": int(self.pinned),
                        "nproc": os.cpu_count(),
                        "python": platform.python_version(),
                        "loop": self.loop_kind,
                        "busy_before": round(self.busy_before, 3),
                        "cpu_us_per_reply": cpu_parts(r.run),
                    }
                )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_bench("native_udp", lambda stack: run(args, stack))


if __name__ == "__main__":
    sys.exit(main())
