"""Certified replies: signing in the event loop vs. in the signing threads
(node.fronts.native.certify), with the site's key type (RSA-2048).

For each mode it signs ``--replies`` resolution replies (2.10, so nothing is reused)
and reports signatures per second,
the event loop's own CPU per signature (``time.thread_time`` on the loop thread: what
the other requests lose), then signs them again while a ticker task asks to run every
millisecond and reports how late it ran (p50/p99: what a cached answer waits
meanwhile). Then one row for a reused signature (2.5: no RSA at all). Prints one
table; appends it to loadtest/out/cert_sign.csv.

    .venv/bin/python -m loadtest.cert_sign [--replies 2000] [--workers 1,2]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from cryptography.hazmat.primitives.asymmetric import rsa
from prometheus_client import CollectorRegistry

from loadtest.benchtable import Row, append_csv, format_table
from node.fronts.native.certify import Certifier
from node.runtime.metrics import NodeMetrics
from protocol.bodies import ResolutionReply, ResolutionRequest
from protocol.codes import OpCode, OpFlag, ResponseCode
from protocol.message import Envelope, Header, Message
from protocol.msgsign import sign_message
from protocol.negotiate import build_reply
from protocol.values import HandleValue

OUT = REPO / "loadtest" / "out"
TICK_S = 0.001


def replies(n: int, version: tuple[int, int]) -> list[Message]:
    values = tuple(HandleValue(i, "URL", b"https://example.com/abc123") for i in (1, 2, 3))
    out = []
    for rid in range(1, n + 1):
        env = Envelope(*version, suggested_major=version[0], suggested_minor=version[1])
        request = Message(
            replace(env, request_id=rid),
            Header(OpCode.RESOLUTION, flags=OpFlag.CERT | OpFlag.PUBL),
            ResolutionRequest("88.118.2/ABC123", (), ()),
        )
        body = ResolutionReply("88.118.2/ABC123", values)
        out.append(build_reply(request, ResponseCode.SUCCESS, body, now=time.time(), site_serial=1))
    return out


async def measure(label: str, work: Callable[[], Awaitable[None]], n: int) -> Row:
    """Two passes: alone (rate, loop CPU), then beside the ticker (its lateness)."""
    wall, cpu = time.perf_counter(), time.thread_time()
    await work()
    wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
    late: list[float] = []
    stop = False

    async def ticker() -> None:
        while not stop:
            asked = time.perf_counter()
            await asyncio.sleep(TICK_S)
            late.append(time.perf_counter() - asked - TICK_S)

    tick = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    await work()
    stop = True
    await tick
    late.sort()
    return Row(
        "cert sign",
        label,
        rate=n / wall,
        p50_ms=statistics.median(late) * 1000,
        p99_ms=late[min(len(late) - 1, int(len(late) * 0.99))] * 1000,
        detail=f"loop CPU {cpu / n * 1e6:.0f} us/signature; p50/p99: ticker lateness",
    )


async def run(n: int, workers: list[int]) -> list[Row]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rows = []
    batch = replies(n, (2, 10))

    async def inline() -> None:
        for message in batch:
            sign_message(message, key)
            await asyncio.sleep(0)  # as the handler would: one request per task step

    rows.append(await measure("in the event loop", inline, n))
    for w in workers:
        certifier = Certifier(
            lambda: key,
            NodeMetrics(CollectorRegistry(), "bench", "bench"),
            rate_per_s=0,
            queue_max=n,
            workers=w,
        )

        async def pooled(c: Certifier = certifier) -> None:
            await asyncio.gather(*(c.sign(m, None) for m in batch))

        rows.append(await measure(f"signing threads: {w}", pooled, n))
        certifier.close()
    certifier = Certifier(
        lambda: key, NodeMetrics(CollectorRegistry(), "bench", "bench"), rate_per_s=0
    )
    old = replies(n, (2, 5))
    await certifier.sign(old[0], None)

    async def reused() -> None:
        for message in old:
            await certifier.sign(message, None)
            await asyncio.sleep(0)  # as the handler would: one request per task step

    rows.append(await measure("reused (2.5, same shape)", reused, n))
    certifier.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replies", type=int, default=2000)
    parser.add_argument("--workers", default="1,2")
    args = parser.parse_args()
    workers = [int(w) for w in args.workers.split(",") if w]
    rows = asyncio.run(run(args.replies, workers))
    print("\n".join(format_table(rows)))
    OUT.mkdir(exist_ok=True)
    settings = f"replies={args.replies} workers={args.workers}"
    append_csv(OUT / "cert_sign.csv", time.strftime("%Y-%m-%dT%H:%M:%S"), settings, rows)


if __name__ == "__main__":
    main()
