"""Signed identifiers registered per second by an MES over HTTP, in one run, against two
floors measured in the same run. Prints one table; appends it to loadtest/out/mes_writes.csv.

    .venv/bin/python loadtest/mes_writes.py [--seconds 8] [--warmup 2] [--batches 6]
        [--copy-rows 200000]

A real ``idnode serve --demo`` on an embedded PostgreSQL; every write is a finished roll
written by field names (``{"template", "fields"}``: 16 fields of the shipped roll
template, checked against it and signed with ES256 by the node) under the silk mill's
prefix 88.118.2 as its admin, each a new handle:

1. ``PUT /api/handles/{h}`` by one client (closed loop), then by 64 concurrent clients
   (group commit on: ``write_group_max`` 64, the default), then by 64 against a second
   node on the same registry with ``write_group_max`` 1 (each write its own commit);
2. ``POST /api/batches`` of 1,000 and of 2,000 creates (``items`` mode) from one client,
   and of 2,000 in ``atomic`` mode;
3. floors, in this process: the signer alone (ES256 over the same record, one core), and
   raw COPY of pre-encoded rows of the same size into a table shaped like ``handles``.

"ratio" is each row's rate over the COPY floor. Afterwards the registry must hold
exactly the handles acknowledged.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable as a plain script

import aiohttp
import asyncpg
import orjson
from cryptography.hazmat.primitives.asymmetric import ec

from loadtest.benchtable import Row, append_csv, format_table
from loadtest.harness import OUT, BenchError, machine_busy, run_bench, start_idnode
from loadtest.lag import basic_auth, quantile
from loadtest.rolls import embedded_registry
from node.demo.dataset import SILK_MILL
from node.demo.templates import fabric_code
from node.signing.signer import RecordSigner
from node.templates.shipped import ROLL
from protocol.handle import normalise
from protocol.jose import SigningKey
from protocol.valuecodec import encode_values

ADMIN = "300:88.118.2/ADMIN"
PREFIX = "88.118.2"


def fields(n: int) -> dict[str, str]:
    return {
        "fabricCode": fabric_code("301", "2100", "075072", "1010"),
        "productName": "涤纶春亚纺",
        "stage": "成品",
        "composition": "100% 涤纶",
        "yarnCount": "经 75D/72F FDY，纬 75D/72F DTY",
        "weave": "平纹",
        "widthCm": "150",
        "weightGsm": "62",
        "colour": ("本白", "藏青", "大红", "墨绿")[n % 4],
        "rollNumber": f"C{n:011d}",
        "rollLengthM": "100.5",
        "grade": "一等品",
        "mill": SILK_MILL.name,
        "productionDate": f"2026-03-{1 + n % 28:02d}",
        "dyeLot": f"DL-2026031{n % 10}-{n % 97:02d}",
        "certificate": f"https://example.com/reports/FIN-{n}.pdf",
    }


def body(n: int) -> dict[str, object]:
    return {"template": ROLL.handle, "fields": fields(n)}


@dataclass
class Tally:
    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0


class Counter:
    def __init__(self, run: str):
        self.run = run
        self.n = 0

    def next(self) -> int:
        self.n += 1
        return self.n

    def handle(self, n: int) -> str:
        return f"{PREFIX}/MES-{self.run}-{n:09d}"


async def closed_loop(
    op: Callable[[], Awaitable[int]], clients: int, warmup_s: float, seconds: float
) -> Tally:
    """``clients`` loops calling ``op`` (which returns how many identifiers it wrote);
    only what completes inside the measured window counts."""
    tally = Tally()
    start = time.perf_counter() + warmup_s
    end = start + seconds

    async def loop() -> None:
        while True:
            t0 = time.perf_counter()
            if t0 >= end:
                return
            try:
                done = await op()
            except Exception as exc:
                t1 = time.perf_counter()
                if start <= t1 <= end:
                    why = type(exc).__name__ + ": " + str(exc)[:80]
                    tally.errors[why] = tally.errors.get(why, 0) + 1
                continue
            t1 = time.perf_counter()
            if t0 >= start and t1 <= end:
                tally.ok += done
                tally.latencies.append(t1 - t0)

    await asyncio.gather(*(loop() for _ in range(clients)))
    tally.seconds = seconds
    return tally


async def put_one(http: aiohttp.ClientSession, base: str, ids: Counter) -> int:
    n = ids.next()
    url = f"{base}/api/handles/{ids.handle(n)}?overwrite=false"
    async with http.put(url, data=orjson.dumps(body(n)), headers=HEADERS) as r:
        text = await r.text()
        if r.status != 201:
            raise BenchError(f"PUT {r.status}: {text[:200]}")
    return 1


async def post_batch(
    http: aiohttp.ClientSession, base: str, ids: Counter, size: int, mode: str
) -> int:
    items = []
    for _ in range(size):
        n = ids.next()
        items.append({"op": "create", "handle": ids.handle(n), **body(n)})
    payload = orjson.dumps({"mode": mode, "items": items})
    async with http.post(f"{base}/api/batches", data=payload, headers=HEADERS) as r:
        reply = await r.json()
        if r.status != 200 or reply["succeeded"] != size:
            raise BenchError(f"batch {r.status}: {str(reply)[:300]}")
    return size


HEADERS = {
    "Authorization": basic_auth(ADMIN, SILK_MILL.admin_secret),
    "Content-Type": "application/json",
}


def signer_floor(count: int) -> float:
    key = SigningKey(ec.generate_private_key(ec.SECP256R1()), "ES256", "bench")
    root = SigningKey(ec.generate_private_key(ec.SECP256R1()), "ES256", "root")
    signer = RecordSigner(key, 86400, root_key=root)
    records = [tuple(ROLL.record(fields(n))) for n in range(count)]
    now = int(time.time())
    t0 = time.perf_counter()
    for n, values in enumerate(records):
        signer.sign(f"{PREFIX}/FLOOR-{n}", values, now)
    return count / (time.perf_counter() - t0)


async def copy_floor(dsn: str, rows: int) -> float:
    key = SigningKey(ec.generate_private_key(ec.SECP256R1()), "ES256", "bench")
    root = SigningKey(ec.generate_private_key(ec.SECP256R1()), "ES256", "root")
    signed = RecordSigner(key, 86400, root_key=root).sign(
        f"{PREFIX}/X", tuple(ROLL.record(fields(1))), int(time.time())
    )
    assert signed is not None
    wire = encode_values(tuple(sorted(signed, key=lambda v: v.index)))
    now = datetime.now(UTC)
    data = [
        (normalise(f"{PREFIX}/COPY-{n:09d}"), f"{PREFIX}/COPY-{n:09d}", PREFIX, wire, 1, now, now)
        for n in range(rows)
    ]
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE TABLE copy_floor (LIKE handles INCLUDING ALL)")
        t0 = time.perf_counter()
        await conn.copy_records_to_table(
            "copy_floor",
            records=data,
            columns=[
                "handle_key",
                "handle",
                "prefix_key",
                "values",
                "version",
                "created_at",
                "updated_at",
            ],
        )
        rate = rows / (time.perf_counter() - t0)
        await conn.execute("DROP TABLE copy_floor")
    finally:
        await conn.close()
    return rate, len(wire)  # type: ignore[return-value]


def row(bench: str, target: str, t: Tally, floor: float, detail: str = "") -> Row:
    rate = t.ok / t.seconds if t.seconds else 0.0
    errs = (
        f"; {sum(t.errors.values())} errors {dict(list(t.errors.items())[:2])}" if t.errors else ""
    )
    return Row(
        bench,
        target,
        rate,
        quantile(t.latencies, 0.5) * 1000,
        quantile(t.latencies, 0.99) * 1000,
        rate / floor,
        "copy",
        detail=detail + errs,
    )


async def measure(args: argparse.Namespace, dsn: str, bases: tuple[str, str]) -> list[Row]:
    say = lambda text: print(f"# {text}", file=sys.stderr, flush=True)  # noqa: E731
    rows: list[Row] = []
    say(f"floors: raw COPY of {args.copy_rows} rows, the signer over 3,000 records ...")
    copy_rate, wire_bytes = await copy_floor(dsn, args.copy_rows)  # type: ignore[misc]
    sign_rate = await asyncio.to_thread(signer_floor, 3000)
    rows.append(
        Row("0 floors", f"raw COPY, {wire_bytes} B rows", copy_rate, ratio=1.0, ratio_of="copy")
    )
    rows.append(
        Row(
            "0 floors",
            "signer alone (ES256, 1 core)",
            sign_rate,
            ratio=sign_rate / copy_rate,
            ratio_of="copy",
        )
    )
    run = datetime.now(UTC).strftime("%H%M%S")
    grouped, single = bases
    limits = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=limits) as http:
        for name, base, clients, group in (
            ("1 single", grouped, 1, "group commit"),
            ("1 single", grouped, 64, "group commit"),
            ("1 single", single, 64, "write_group_max=1"),
        ):
            ids = Counter(f"{run}S{clients}{'G' if base == grouped else 'N'}")
            say(f"PUT by fields, {clients} client(s), {group} ...")
            t = await closed_loop(
                lambda b=base, i=ids: put_one(http, b, i), clients, args.warmup, args.seconds
            )
            rows.append(
                row(
                    name,
                    f"PUT, {clients} client{'s' if clients > 1 else ''}, {group}",
                    t,
                    copy_rate,
                )
            )
        for size, mode in ((1000, "items"), (2000, "items"), (2000, "atomic")):
            ids = Counter(f"{run}B{size}{mode[0]}")
            say(f"POST /api/batches of {size} ({mode}) ...")
            await post_batch(http, grouped, ids, size, mode)  # warm-up
            t = Tally()
            for _ in range(args.batches):
                t0 = time.perf_counter()
                t.ok += await post_batch(http, grouped, ids, size, mode)
                t.latencies.append(time.perf_counter() - t0)
            t.seconds = sum(t.latencies)
            rows.append(
                row(
                    "2 batches",
                    f"POST /api/batches {size} ({mode})",
                    t,
                    copy_rate,
                    "p50/p99: per batch",
                )
            )
    conn = await asyncpg.connect(dsn)
    try:
        stored = await conn.fetchval(
            "SELECT count(*) FROM handles WHERE handle_key LIKE $1", f"{PREFIX}/MES-{run}%"
        )
        unsigned = await conn.fetchval(
            "SELECT count(*) FROM handles WHERE handle_key LIKE $1 AND position('HS_SIGNATURE'::bytea in \"values\") = 0",
            f"{PREFIX}/MES-{run}%",
        )
    finally:
        await conn.close()
    say(f"registry: {stored} handles written by this run, {unsigned} of them unsigned")
    if unsigned:
        raise BenchError(f"{unsigned} records were stored without a signature")
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--batches", type=int, default=6)
    p.add_argument("--copy-rows", type=int, default=200_000)
    args = p.parse_args()

    def run(stack: ExitStack) -> int:
        busy = machine_busy()
        server = stack.enter_context(embedded_registry())
        dsn = server.dsn
        data = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="idnode-mes-")))
        os.chmod(data, 0o711)
        grouped = start_idnode(dsn, data / "node", name="mes-grouped", extra_args=["--demo"])
        stack.callback(grouped.stop)
        single = start_idnode(
            dsn,
            data / "node",
            name="mes-single",
            extra_args=["--demo"],
            extra_env={"IDNODE_WRITE_GROUP_MAX": "1"},
        )
        stack.callback(single.stop)
        bases = (f"http://127.0.0.1:{grouped.http_port}", f"http://127.0.0.1:{single.http_port}")
        rows = asyncio.run(measure(args, dsn, bases))
        when = datetime.now(UTC).isoformat(timespec="seconds")
        print(
            f"# {when}  nproc={os.cpu_count()}  busy before start={busy:.0%}  "
            f"seconds={args.seconds:g} warm-up={args.warmup:g} batches={args.batches}"
        )
        print(
            "# every write: a finished roll by field names (16 fields), checked against "
            f"{ROLL.handle} and signed (ES256) by the node, one new handle"
        )
        for line in format_table(rows):
            print(line)
        append_csv(OUT / "mes_writes.csv", when, f"seconds={args.seconds}", rows)
        return 0

    return run_bench("mes_writes", run)


if __name__ == "__main__":
    raise SystemExit(main())
