"""A soak: a node held at 70 % of its measured capacity for minutes, with mixed reads and
writes, sampled every 10 s for memory, file descriptors, throughput, latency and errors.
Prints one row per sample and a verdict; appends the rows to loadtest/out/soak.csv.

    .venv/bin/python -m loadtest.soak                    # 10 minutes
    .venv/bin/python -m loadtest.soak --minutes 1        # a smoke run
    .venv/bin/python -m loadtest.soak --seconds 15 --sample-seconds 5 --capacity-seconds 2

What it does, in order:

1. starts a throwaway embedded PostgreSQL and ``idnode serve --demo`` on it (a real
   process, free ports), and PUTs the ring of ``--write-handles`` records the writes
   will keep replacing (``88.118.2/SOAK-<run>-<n>``, as the silk mill's admin);
2. measures capacity for ``--capacity-seconds``: ``--clients`` closed loops running the
   mix below as fast as the node answers;
3. runs the same mix open loop at ``--load`` (0.7) of that rate for the soak's length,
   each request sent at its scheduled time whether or not earlier ones were answered
   (latency counts from that time, so a stall shows in p99 rather than hiding);
4. every ``--sample-seconds``: the node's RSS and open file descriptors
   (/proc/<pid>/fd), PostgreSQL's memory (PSS summed over the postmaster and its
   backends: shared buffers counted once), and per kind the requests done, p50/p99 and
   errors of that interval.

The mix, per 20 requests: 9 native UDP resolutions (index 1 of a demo record or a ring
record, one datagram each way), 9 HTTP GETs of whole records (same handles), 2 HTTP PUTs
replacing a ring record (signed by the node). Writes go round a fixed ring and reads to
a fixed set, so the node's working set stops growing once the ring is cached: any
growth after that is a leak, not data.

The verdict: least-squares slope per minute of node RSS, fds and PostgreSQL PSS over
the second half of the samples (the first half includes warming up: caches filling,
pools opening), against the limits below, and the errors in total. Exit status 1 when
either fails.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import aiohttp
import orjson

from loadtest.harness import (
    OUT,
    BenchError,
    machine_busy,
    process_tree,
    rss_bytes,
    run_bench,
    start_idnode,
)
from loadtest.lag import basic_auth, quantile
from loadtest.rolls import embedded_registry
from node.demo.dataset import SILK_MILL, elevator_handles, textile_handles
from protocol.bodies import ResolutionRequest
from protocol.codes import OpCode, OpFlag, ResponseCode
from protocol.message import Envelope, Header, Message, decode, encode

ADMIN = "300:88.118.2/ADMIN"  # the silk mill's admin (node.demo.dataset)
PREFIX = "88.118.2"
REQUEST_ID = slice(8, 12)  # in the Handle envelope (docs/protocol.md)
MIX = "ugugugugugPugugugugP"  # u: UDP resolution, g: HTTP GET, P: HTTP PUT; per 20
WRITE_SLOTS = [k for k, c in enumerate(MIX) if c == "P"]
REPLY_TIMEOUT_S = 2.0  # a UDP request unanswered this long is an error
HTTP_TIMEOUT_S = 10.0
MAX_IN_FLIGHT = 512  # past this the paced load counts a "client backlog" error instead
# The verdict's limits on the slope over the second half, per minute.
RSS_SLOPE_MIB = 1.0
FD_SLOPE = 0.5
MiB = 1 << 20


# -- the requests ------------------------------------------------------------------


class UdpReader(asyncio.DatagramProtocol):
    """Native resolutions over one UDP socket, many in flight, matched by request id."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.waiting: dict[int, asyncio.Future[bytes]] = {}
        self.next_id = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        fut = self.waiting.pop(int.from_bytes(data[REQUEST_ID], "big"), None)
        if fut is not None and not fut.done():
            fut.set_result(data)

    async def resolve(self, handle: str) -> None:
        """Index 1 of ``handle``; raises on no reply or an RC other than 1."""
        assert self.transport is not None
        self.next_id = self.next_id % 0x7FFFFFFF + 1
        request_id = self.next_id
        header = Header(
            OpCode.RESOLUTION,
            flags=OpFlag.RECU | OpFlag.CACR | OpFlag.PUBL,
            expiration=int(time.time()) + 43_200,
        )
        message = Message(Envelope(request_id=request_id), header, ResolutionRequest(handle, (1,)))
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.waiting[request_id] = fut
        self.transport.sendto(encode(message))
        try:
            reply = await asyncio.wait_for(fut, REPLY_TIMEOUT_S)
        except TimeoutError:
            raise BenchError("udp: no reply") from None
        finally:
            self.waiting.pop(request_id, None)
        rc = decode(reply).header.response_code
        if rc != ResponseCode.SUCCESS:
            raise BenchError(f"udp: RC {int(rc)}")


def ring_values(n: int, version: int) -> bytes:
    return orjson.dumps(
        [
            {
                "index": 1,
                "type": "URL",
                "data": {
                    "format": "string",
                    "value": f"https://trace.example.com/soak/{n}/{version}",
                },
            },
            {
                "index": 100,
                "type": "HS_ADMIN",
                "data": {
                    "format": "admin",
                    "value": {
                        "handle": f"{PREFIX}/ADMIN",
                        "index": 300,
                        "permissions": "111111111111",
                    },
                },
            },
        ]
    )


@dataclass
class Target:
    handle_port: int
    http_port: int
    run: str  # names the ring: 88.118.2/SOAK-<run>-<n>
    ring: int
    udp: UdpReader
    http: aiohttp.ClientSession
    reads: list[str] = field(default_factory=list)
    counter: int = 0
    capacity_errors: dict[str, int] = field(default_factory=dict)

    def ring_handle(self, n: int) -> str:
        return f"{PREFIX}/SOAK-{self.run}-{n:06d}"

    def url(self, handle: str) -> str:
        return f"http://127.0.0.1:{self.http_port}/api/handles/{quote(handle, safe='/')}"

    async def get(self, handle: str) -> None:
        async with self.http.get(self.url(handle)) as r:
            await r.read()
            if r.status != 200:
                raise BenchError(f"GET {r.status}")

    async def put(self, n: int) -> None:
        self.counter += 1
        body = ring_values(n, self.counter)
        async with self.http.put(self.url(self.ring_handle(n)), data=body) as r:
            await r.read()
            if r.status not in (200, 201):
                raise BenchError(f"PUT {r.status}")

    def op(self, i: int) -> tuple[str, Callable[[], Awaitable[None]]]:
        """The i-th request of the mix: (kind, call)."""
        kind = MIX[i % len(MIX)]
        if kind == "P":
            slot = WRITE_SLOTS.index(i % len(MIX))
            n = (i // len(MIX) * len(WRITE_SLOTS) + slot) % self.ring
            return "write", lambda: self.put(n)
        handle = self.reads[(i * 7919) % len(self.reads)]  # a stride: no two alike in a row
        if kind == "u":
            return "udp", lambda: self.udp.resolve(handle)
        return "get", lambda: self.get(handle)


# -- recording ---------------------------------------------------------------------


@dataclass
class Done:
    kind: str
    latency_s: float
    error: str = ""


class Recorder:
    def __init__(self) -> None:
        self.done: list[Done] = []
        self.errors: dict[str, int] = {}

    def add(self, kind: str, latency_s: float, error: str = "") -> None:
        self.done.append(Done(kind, latency_s, error))
        if error:
            self.errors[error] = self.errors.get(error, 0) + 1

    def take(self) -> list[Done]:
        out, self.done = self.done, []
        return out


async def timed(
    recorder: Recorder, kind: str, call: Callable[[], Awaitable[None]], since: float
) -> None:
    error = ""
    try:
        await asyncio.wait_for(call(), HTTP_TIMEOUT_S)
    except BenchError as exc:
        error = str(exc)
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        error = f"{kind}: {type(exc).__name__}"
    recorder.add(kind, time.perf_counter() - since, error)


async def capacity(target: Target, clients: int, seconds: float) -> tuple[float, dict[str, int]]:
    """Requests per second of the mix, ``clients`` closed loops for ``seconds``; and the
    errors met (printed: the soak's rate rests on this figure)."""
    recorder = Recorder()
    end = time.perf_counter() + seconds
    counter = iter(range(10**12))

    async def loop() -> None:
        while time.perf_counter() < end:
            kind, call = target.op(next(counter))
            await timed(recorder, kind, call, time.perf_counter())

    await asyncio.gather(*(loop() for _ in range(clients)))
    done = [d for d in recorder.take() if not d.error]
    return len(done) / seconds, recorder.errors


# -- samples -----------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    t_s: float  # since the paced load began
    reads_per_s: float
    writes_per_s: float
    read_p50_ms: float
    read_p99_ms: float
    write_p50_ms: float
    write_p99_ms: float
    errors: int
    node_rss_mib: float
    node_fds: int
    pg_pss_mib: float


def pss_bytes(pids: Sequence[int]) -> int:
    """Proportional set size of these processes (shared pages split between them), from
    /proc/<pid>/smaps_rollup; RSS where that cannot be read."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("Pss:")) * 1024
        except (OSError, StopIteration):
            total += rss_bytes([pid])
    return total


def fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def sample(t_s: float, span_s: float, done: list[Done], node_pid: int, pg_pid: int) -> Sample:
    def ms(kinds: tuple[str, ...], q: float) -> float:
        return 1000 * quantile([d.latency_s for d in done if d.kind in kinds and not d.error], q)

    reads = sum(1 for d in done if d.kind != "write" and not d.error)
    writes = sum(1 for d in done if d.kind == "write" and not d.error)
    return Sample(
        t_s=t_s,
        reads_per_s=reads / span_s,
        writes_per_s=writes / span_s,
        read_p50_ms=ms(("udp", "get"), 0.5),
        read_p99_ms=ms(("udp", "get"), 0.99),
        write_p50_ms=ms(("write",), 0.5),
        write_p99_ms=ms(("write",), 0.99),
        errors=sum(1 for d in done if d.error),
        node_rss_mib=rss_bytes(process_tree(node_pid)) / MiB,
        node_fds=fd_count(node_pid),
        pg_pss_mib=pss_bytes(process_tree(pg_pid)) / MiB,
    )


async def paced(
    target: Target,
    rate: float,
    seconds: float,
    every_s: float,
    node_pid: int,
    pg_pid: int,
    recorder: Recorder,
    progress: Callable[[Sample], None],
) -> list[Sample]:
    """The mix at ``rate`` per second for ``seconds``, a sample every ``every_s``."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    interval = 1.0 / rate
    due = start
    i = 0
    in_flight: set[asyncio.Task[None]] = set()
    samples: list[Sample] = []
    next_sample = start + every_s
    end = start + seconds
    while True:
        now = loop.time()
        while due <= min(now, end):
            if len(in_flight) >= MAX_IN_FLIGHT:
                recorder.add("backlog", 0.0, "client backlog (node too slow)")
            else:
                kind, call = target.op(i)
                sent = time.perf_counter() - (now - due)  # the scheduled time
                task = asyncio.create_task(timed(recorder, kind, call, sent))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            i += 1
            due += interval
        if now >= next_sample:
            s = sample(next_sample - start, every_s, recorder.take(), node_pid, pg_pid)
            samples.append(s)
            progress(s)
            next_sample += every_s
            if next_sample > end + 1e-6:
                break
        await asyncio.sleep(max(0.0, min(due, next_sample) - loop.time()))
    if in_flight:
        await asyncio.wait(in_flight, timeout=HTTP_TIMEOUT_S + 1)
    recorder.take()  # answers after the last sample: not in any row
    return samples


# -- the verdict ---------------------------------------------------------------------


def slope_per_minute(ts: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of ys over ts (seconds), per minute; 0 for fewer than 2."""
    n = len(ts)
    if n < 2:
        return 0.0
    mt, my = sum(ts) / n, sum(ys) / n
    var = sum((t - mt) ** 2 for t in ts)
    if var == 0:
        return 0.0
    return 60.0 * sum((t - mt) * (y - my) for t, y in zip(ts, ys, strict=True)) / var


@dataclass(frozen=True)
class Verdict:
    rss_slope: float  # MiB per minute
    fd_slope: float
    pg_slope: float
    p99_slope: float  # read p99, ms per minute (shown, not judged: latency is noisy)
    errors: int
    samples_used: int

    @property
    def ok(self) -> bool:
        return self.errors == 0 and self.rss_slope <= RSS_SLOPE_MIB and self.fd_slope <= FD_SLOPE

    def line(self) -> str:
        growth = self.rss_slope > RSS_SLOPE_MIB or self.fd_slope > FD_SLOPE
        judged = "+".join(
            word for word, bad in (("GROWTH", growth), ("ERRORS", self.errors > 0)) if bad
        )
        judged = judged or "ok"
        return (
            f"verdict: {judged}  node RSS {self.rss_slope:+.2f} MiB/min (limit {RSS_SLOPE_MIB:g}), "
            f"fds {self.fd_slope:+.2f}/min (limit {FD_SLOPE:g}), PostgreSQL PSS "
            f"{self.pg_slope:+.2f} MiB/min, read p99 {self.p99_slope:+.2f} ms/min; least "
            f"squares over the last {self.samples_used} samples; errors {self.errors}"
        )


def judge(samples: Sequence[Sample], errors: int) -> Verdict:
    half = list(samples[len(samples) // 2 :])
    ts = [s.t_s for s in half]
    return Verdict(
        rss_slope=slope_per_minute(ts, [s.node_rss_mib for s in half]),
        fd_slope=slope_per_minute(ts, [float(s.node_fds) for s in half]),
        pg_slope=slope_per_minute(ts, [s.pg_pss_mib for s in half]),
        p99_slope=slope_per_minute(ts, [s.read_p99_ms for s in half]),
        errors=errors,
        samples_used=len(half),
    )


HEAD = (
    f"{'t s':>6}{'reads/s':>9}{'writes/s':>9}{'read p50':>10}{'read p99':>10}"
    f"{'write p50':>11}{'write p99':>11}{'errors':>8}{'node RSS MiB':>14}{'fds':>6}"
    f"{'pg PSS MiB':>12}"
)


def format_row(s: Sample) -> str:
    return (
        f"{s.t_s:>6.0f}{s.reads_per_s:>9.0f}{s.writes_per_s:>9.0f}{s.read_p50_ms:>10.2f}"
        f"{s.read_p99_ms:>10.2f}{s.write_p50_ms:>11.2f}{s.write_p99_ms:>11.2f}{s.errors:>8}"
        f"{s.node_rss_mib:>14.1f}{s.node_fds:>6}{s.pg_pss_mib:>12.1f}"
    )


def append_csv(path: Path, run_at: str, rate: float, samples: Sequence[Sample]) -> None:
    names = ["run_at", "rate", *asdict(samples[0]).keys()] if samples else []
    new = not path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=names)
        if new:
            writer.writeheader()
        for s in samples:
            writer.writerow({"run_at": run_at, "rate": f"{rate:.0f}", **asdict(s)})


# -- the run -------------------------------------------------------------------------


def say(text: str) -> None:
    print(f"# {text}", file=sys.stderr, flush=True)


async def soak(
    args: argparse.Namespace, handle_port: int, http_port: int, node_pid: int, pg_pid: int
) -> tuple[float, dict[str, int], list[Sample], Recorder]:
    loop = asyncio.get_running_loop()
    transport, udp = await loop.create_datagram_endpoint(
        UdpReader, remote_addr=("127.0.0.1", handle_port)
    )
    headers = {
        "Authorization": basic_auth(ADMIN, SILK_MILL.admin_secret),
        "Content-Type": "application/json",
    }
    # As many HTTP connections as closed-loop clients: the capacity phase opens them all,
    # so a later latency spike queues requests (counted from their scheduled time) rather
    # than opening more, and the node's descriptor count measures the node, not the client.
    connector = aiohttp.TCPConnector(limit=args.clients)
    timeout = aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S)
    try:
        async with aiohttp.ClientSession(
            connector=connector, headers=headers, timeout=timeout
        ) as http:
            run = datetime.now(UTC).strftime("%H%M%S")
            target = Target(handle_port, http_port, run, args.write_handles, udp, http)
            say(f"writing the ring of {args.write_handles} records ...")
            ring = iter(range(args.write_handles))

            async def fill() -> None:
                for n in ring:
                    await target.put(n)

            await asyncio.gather(*(fill() for _ in range(16)))
            demo = [h.handle for h in (*textile_handles(), *elevator_handles())]
            target.reads = demo + [target.ring_handle(n) for n in range(args.write_handles)]
            say(
                f"measuring capacity: {args.clients} closed loops for {args.capacity_seconds:g} s ..."
            )
            measured, target.capacity_errors = await capacity(
                target, args.clients, args.capacity_seconds
            )
            rate = max(1.0, args.load * measured)
            say(f"capacity {measured:.0f}/s; soaking at {rate:.0f}/s for {args.seconds:g} s")
            recorder = Recorder()
            samples = await paced(
                target,
                rate,
                args.seconds,
                args.sample_seconds,
                node_pid,
                pg_pid,
                recorder,
                lambda s: say(format_row(s).strip()),
            )
            return measured, target.capacity_errors, samples, recorder
    finally:
        transport.close()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=10.0, help="length of the soak (default 10)")
    p.add_argument("--seconds", type=float, help="length in seconds (overrides --minutes)")
    p.add_argument("--sample-seconds", type=float, default=10.0)
    p.add_argument("--capacity-seconds", type=float, default=10.0)
    p.add_argument("--load", type=float, default=0.7, help="share of the measured capacity")
    p.add_argument("--clients", type=int, default=32, help="closed loops measuring capacity")
    p.add_argument("--write-handles", type=int, default=500, help="records the writes go round")
    p.add_argument("--csv", type=Path, default=OUT / "soak.csv", help="appends the rows here")
    args = p.parse_args(argv)
    if args.seconds is None:
        args.seconds = args.minutes * 60.0
    if args.seconds < 2 * args.sample_seconds:
        p.error("the soak must last at least two samples")

    def run(stack: ExitStack) -> int:
        busy = machine_busy()
        say("starting embedded PostgreSQL and idnode serve --demo ...")
        server = stack.enter_context(embedded_registry())
        pg_pid = server.postmaster_pid()
        if pg_pid is None:
            raise BenchError("the embedded PostgreSQL reports no postmaster pid")
        data = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="idnode-soak-")))
        os.chmod(data, 0o711)
        node = start_idnode(server.dsn, data / "node", name="soak", extra_args=["--demo"])
        stack.callback(node.stop)
        measured, capacity_errors, samples, recorder = asyncio.run(
            soak(args, node.handle_port, node.http_port, node.pid, pg_pid)
        )
        errors = sum(recorder.errors.values())
        verdict = judge(samples, errors)
        when = datetime.now(UTC).isoformat(timespec="seconds")
        rate = args.load * measured
        print(
            f"# {when}  nproc={os.cpu_count()}  python={sys.version.split()[0]}  busy before "
            f"start={busy:.0%}  soak={args.seconds:g} s  sample every {args.sample_seconds:g} s"
        )
        print(
            f"# capacity {measured:.0f} req/s (mix per 20: 9 UDP resolutions, 9 HTTP GETs, "
            f"2 HTTP PUTs; {args.clients} closed loops, {args.capacity_seconds:g} s); soak at "
            f"{args.load:.0%} = {rate:.0f} req/s, open loop; ring of {args.write_handles} records"
        )
        if capacity_errors:
            print(f"# errors while measuring capacity: {dict(sorted(capacity_errors.items()))}")
        print(HEAD)
        print("-" * len(HEAD))
        for s in samples:
            print(format_row(s))
        if recorder.errors:
            print(f"# errors by kind: {dict(sorted(recorder.errors.items()))}")
        print(f"# {verdict.line()}")
        append_csv(args.csv, when, rate, samples)
        return 0 if verdict.ok else 1

    return run_bench("soak", run)


if __name__ == "__main__":
    raise SystemExit(main())
