"""Invalidation lag across node instances: how long after a write through instance A
has been acknowledged does instance B, sharing A's PostgreSQL, still answer with the
old record from its cache?

Two ``idnode serve`` processes on one database (a scratch database on the benchmark's
PostgreSQL, so the bulk dataset is left alone): A with the demo data (its enterprise
admins and their secrets), B plain. One probe handle, ``88.118.2/LAG-PROBE``, with a URL
that carries a write number. For each write: the probe's new URL goes to A as an HTTP
PUT with the silk mill's admin credentials, while two tight loops ask B for the probe,
one over native UDP and one over HTTP (keep-alive), until each sees the new number.
B has the old record cached every time (it read it after the previous write, and the
loops hit its cache until the write's NOTIFY drops it).

Reported per front: the time from A's acknowledgement (the 200 reaching us) to B's first
answer with the new value, 0 when B had it already by then; and B's own
``idnode_cache_invalidation_lag_seconds`` (from the trigger's clock in PostgreSQL to
the NOTIFY arriving at B).
"""

from __future__ import annotations

import asyncio
import base64
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import aiohttp
import asyncpg

from loadtest.harness import (
    BenchError,
    NodeProcess,
    Samples,
    histogram_quantile,
    sample_sum,
    scrape_samples,
    start_idnode,
)
from node.demo.dataset import SILK_MILL
from protocol.bodies import ResolutionRequest
from protocol.codes import OpCode, OpFlag
from protocol.message import Envelope, Header, Message, encode

PROBE = "88.118.2/LAG-PROBE"
ADMIN = "300:88.118.2/ADMIN"  # the silk mill's admin in the demo data (node.demo.dataset)
LAG_DATABASE = "idnode_bench_lag"
POLL_TIMEOUT_S = 5.0  # a write B has not shown by then counts as a failure
REQUEST_ID = slice(8, 12)  # in the Handle envelope (docs/protocol.md)


@dataclass
class Observed:
    udp_ms: list[float] = field(
        default_factory=list
    )  # per write: A's ack -> B's first new UDP answer (>= 0)
    http_ms: list[float] = field(default_factory=list)
    put_ms: list[float] = field(default_factory=list)  # A's write latency, for scale
    before_ack: int = 0  # UDP answers that showed the new value before A's ack reached us
    failures: int = 0  # writes B did not show within POLL_TIMEOUT_S
    polls: int = 0  # UDP polls made in all


@dataclass(frozen=True)
class LagResult:
    writes: int
    seen: Observed
    b_hits: float  # B's cache hits over the run (proof the polls were cached answers)
    b_invalidations: float
    node_lag_count: float
    node_lag_p50_ms: float | None
    node_lag_p99_ms: float | None


def quantile(values: list[float], q: float) -> float:
    """Nearest-rank quantile; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def probe_values(n: int) -> list[dict[str, object]]:
    admin = {"handle": "88.118.2/ADMIN", "index": 300, "permissions": "111111111111"}
    return [
        {
            "index": 1,
            "type": "URL",
            "data": {"format": "string", "value": f"https://trace.example.com/lag/{n:06d}"},
        },
        {"index": 100, "type": "HS_ADMIN", "data": {"format": "admin", "value": admin}},
    ]


def marker(n: int) -> bytes:
    return f"/lag/{n:06d}".encode()


def basic_auth(user: str, secret: str) -> str:
    # Handle.Net clients percent-encode the user (300%3A88.118.2%2FADMIN).
    return "Basic " + base64.b64encode(f"{quote(user, safe='')}:{secret}".encode()).decode()


class UdpAsker(asyncio.DatagramProtocol):
    """One outstanding native request at a time to one server; the first datagram of
    the reply is enough (the probe's URL-only reply is one datagram)."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.waiting: asyncio.Future[bytes] | None = None
        self.request_id = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        want = self.request_id.to_bytes(4, "big")
        if self.waiting is not None and not self.waiting.done() and data[REQUEST_ID] == want:
            self.waiting.set_result(data)

    async def ask(self, request: bytearray, timeout_s: float = 0.5) -> bytes | None:
        assert self.transport is not None
        self.request_id = self.request_id % 0xFFFFFFF + 1
        request[REQUEST_ID] = self.request_id.to_bytes(4, "big")
        self.waiting = asyncio.get_running_loop().create_future()
        self.transport.sendto(bytes(request))
        try:
            return await asyncio.wait_for(self.waiting, timeout_s)
        except TimeoutError:
            return None


def probe_request() -> bytearray:
    header = Header(
        OpCode.RESOLUTION,
        flags=OpFlag.RECU | OpFlag.CACR | OpFlag.PUBL,
        expiration=int(time.time()) + 43_200,
    )
    return bytearray(
        encode(Message(Envelope(request_id=1), header, ResolutionRequest(PROBE, (1,))))
    )


async def _until(
    fetch: Callable[[], Awaitable[bytes | None]], want: bytes, deadline: float
) -> tuple[float, int]:
    """Ask until an answer holds ``want``; (when, polls made). inf when the deadline passed."""
    polls = 0
    while time.perf_counter() < deadline:
        body = await fetch()
        polls += 1
        if body is not None and want in body:
            return time.perf_counter(), polls
    return float("inf"), polls


async def measure(a: NodeProcess, b: NodeProcess, writes: int, gap_s: float) -> Observed:
    loop = asyncio.get_running_loop()
    transport, asker = await loop.create_datagram_endpoint(
        UdpAsker, remote_addr=("127.0.0.1", b.handle_port)
    )
    request = probe_request()
    auth = {"Authorization": basic_auth(ADMIN, SILK_MILL.admin_secret)}
    put_url = f"http://127.0.0.1:{a.http_port}/api/handles/{PROBE}"
    get_url = f"http://127.0.0.1:{b.http_port}/api/handles/{PROBE}?index=1"
    seen = Observed()
    async with aiohttp.ClientSession() as session:

        async def http_get() -> bytes | None:
            async with session.get(get_url) as r:
                return await r.read() if r.status == 200 else None

        async def put(n: int) -> None:
            async with session.put(put_url, json=probe_values(n), headers=auth) as r:
                if r.status not in (200, 201):
                    raise BenchError(
                        f"PUT {PROBE} through A gave {r.status}: {(await r.text())[:300]}"
                    )

        await put(0)
        for fetch in (lambda: asker.ask(request), http_get):  # B reads and caches write 0
            first, _ = await _until(fetch, marker(0), time.perf_counter() + POLL_TIMEOUT_S)
            if first == float("inf"):
                raise BenchError(f"B never showed {PROBE} as written through A")
        for n in range(1, writes + 1):
            await asyncio.sleep(gap_s)
            deadline = time.perf_counter() + POLL_TIMEOUT_S
            want = marker(n)
            udp = asyncio.create_task(_until(lambda: asker.ask(request), want, deadline))
            web = asyncio.create_task(_until(http_get, want, deadline))
            sent = time.perf_counter()
            await put(n)
            acked = time.perf_counter()
            (udp_seen, udp_polls), (web_seen, _) = await asyncio.gather(udp, web)
            seen.polls += udp_polls
            seen.put_ms.append(1000 * (acked - sent))
            if udp_seen == float("inf") or web_seen == float("inf"):
                seen.failures += 1
                continue
            seen.before_ack += udp_seen < acked
            seen.udp_ms.append(max(0.0, 1000 * (udp_seen - acked)))
            seen.http_ms.append(max(0.0, 1000 * (web_seen - acked)))
    transport.close()
    return seen


async def _scratch_database(admin_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:  # our own fixed name, no user data
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def run_lag(
    admin_dsn: str,
    dsn_for: Callable[[str], str],
    writes: int,
    *,
    gap_s: float = 0.02,
    extra_env: dict[str, str] | None = None,
    progress: Callable[[str], None] = lambda line: None,
) -> LagResult:
    """Both instances on a fresh scratch database of the server ``admin_dsn`` points at."""
    asyncio.run(_scratch_database(admin_dsn, LAG_DATABASE))
    dsn = dsn_for(LAG_DATABASE)
    base = Path(tempfile.mkdtemp(prefix="idnode-bench-lag-"))
    nodes: list[NodeProcess] = []
    try:
        env = dict(extra_env or {})
        nodes.append(
            start_idnode(
                dsn, base / "a", name="cache_bench_lag_a", extra_env=env, extra_args=["--demo"]
            )
        )
        nodes.append(start_idnode(dsn, base / "b", name="cache_bench_lag_b", extra_env=env))
        a, b = nodes
        progress(
            f"instances A (pid {a.pid}, http {a.http_port}) and B (pid {b.pid}, udp "
            f"{b.handle_port}, http {b.http_port}) up; {writes} writes through A ..."
        )
        before: Samples = scrape_samples(b.admin_port)
        seen = asyncio.run(measure(a, b, writes, gap_s))
        after = scrape_samples(b.admin_port)
    finally:
        for node in reversed(nodes):
            node.stop()
        shutil.rmtree(base, ignore_errors=True)
    lag_name = "idnode_cache_invalidation_lag_seconds"
    p50 = histogram_quantile(after, lag_name, 0.5)
    p99 = histogram_quantile(after, lag_name, 0.99)

    def delta(name: str, **labels: str) -> float:
        return sample_sum(after, name, **labels) - sample_sum(before, name, **labels)

    return LagResult(
        writes=writes,
        seen=seen,
        b_hits=delta("idnode_cache_hits_total"),
        b_invalidations=delta("idnode_cache_invalidations_total"),
        node_lag_count=sample_sum(after, f"{lag_name}_count"),
        node_lag_p50_ms=None if p50 is None else 1000 * p50,
        node_lag_p99_ms=None if p99 is None else 1000 * p99,
    )
