"""Bulk import against its floor, with resolution answering meanwhile (docs/import.md).

    .venv/bin/python loadtest/bulk_import.py                  # 1,000,000 rolls
    .venv/bin/python loadtest/bulk_import.py --rows 100000 --read-rate 100

In one run, on a throwaway embedded PostgreSQL (or ``--database-url``'s server):

1. writes N finished-roll rows (``TPL.TEXTILE.ROLL.V1``: ``handle`` + 16 fields) as CSV
   to ``loadtest/out/bulk_rolls_<N>.csv`` (kept: the next run of that size reuses it);
2. (a) the floor: COPY N pre-encoded records of the same size and content (each with a
   real HS_SIGNATURE) straight into ``handles``, in the import's chunk size, in a
   scratch database on the same server: what PostgreSQL alone costs;
3. starts ``idnode serve`` on the registry (with 100,000 other rolls to resolve), and a
   small paced reader (``--read-rate`` GETs/s over HTTP, half a hot set answered from
   the cache, half rolls never asked before): first on the idle node, then
   4. (b) during ``idnode import`` of the CSV as a real process (validate, sign, load):
      rows/s and total seconds, against the floor;
   5. (c) resolution p50/p99, cached and uncached, idle and during the import.

Prints the table and appends it to ``loadtest/out/bulk_import.csv``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from statistics import quantiles
from urllib.parse import quote, unquote, urlsplit, urlunsplit

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import aiohttp
import asyncpg
from cryptography.hazmat.primitives.asymmetric import ec

from loadtest.benchtable import Row, append_csv, format_table
from loadtest.bulkload import load_rolls
from loadtest.harness import OUT, BenchError, node_env, start_idnode
from loadtest.rolls import CREDIT_CODE, PREFIX, embedded_registry, register_prefix, roll_handle
from node.signing.signer import RecordSigner
from node.templates.shipped import ROLL
from protocol.handle import normalise, parse_handle
from protocol.jose import SigningKey
from protocol.valuecodec import encode_values
from protocol.values import HandleValue
from registry.migrate import migrate
from registry.store import Registry

GOAL_S = 60.0  # per million rows
READ_SET = 100_000  # rolls the reader resolves (seeded before the import)
HOT = 500  # of which the cached half asks only these
CHUNK = 20_000  # the floor's COPY chunk: the import's default import_chunk_rows
SAMPLE = 2_000  # really signed records the floor's rows take their bytes from
HEADER = ["handle", *(f.key for f in ROLL.fields)]
_COLOURS = ("本白", "漂白", "黑", "藏青", "大红", "墨绿", "卡其", "浅灰")
_GRADES = ("优等品", "一等品", "合格品")
_COLUMNS = ("handle_key", "handle", "prefix_key", "values", "version", "created_at", "updated_at")
# Benchmark SQL on its own scratch database and tables; no user data composed into it.
_LZ4 = "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'"


def bulk_handle(n: int) -> str:
    return f"{PREFIX}/BULK-2026-{n:07d}"


def roll_row(n: int) -> list[str]:
    """Roll n as the CSV holds it: a mill's finished rolls, a few colours, lengths, days
    and grades, one roll number each."""
    return [
        bulk_handle(n),
        "30121000750721010",
        "涤纶春亚纺",
        "成品",
        "100% 涤纶",
        "经 75D/72F FDY，纬 75D/72F DTY",
        "平纹",
        "150",
        "62",
        _COLOURS[n % len(_COLOURS)],
        f"P2026{n:07d}",
        f"{95 + n % 11}.5",
        _GRADES[(n // 8) % len(_GRADES)],
        "吴江盛泽压测丝绸织造有限公司",
        f"2026-03-{1 + (n // 64) % 28:02d}",
        f"DL-202603{1 + (n // 64) % 28:02d}-{n % 4:02d}",
        "https://example.com/reports/FIN-000503.pdf",
    ]


def write_csv(path: Path, rows: int) -> None:
    """The CSV, unless this size is there already (complete: written under another name
    and renamed at the end)."""
    if path.exists():
        return
    partial = path.with_suffix(".partial")
    with partial.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(HEADER)
        for start in range(0, rows, 10_000):
            writer.writerows(roll_row(n) for n in range(start, min(rows, start + 10_000)))
    partial.rename(path)


# -- (a) the floor -------------------------------------------------------------------


def signed_samples(now_s: int) -> list[bytes]:
    """Records exactly as the import stores them (timestamps, HS_SIGNATURE at 400)."""
    key = SigningKey(ec.generate_private_key(ec.SECP256R1()), "ES256", "bench")
    root = SigningKey(ec.generate_private_key(ec.SECP256R1()), "ES256", "root")
    signer = RecordSigner(key, 86400, root_key=root)
    out = []
    for n in range(SAMPLE):
        row = roll_row(n)
        values = ROLL.record(dict(zip(HEADER[1:], row[1:], strict=True)))
        stamped = [HandleValue(v.index, v.type, v.data, timestamp=now_s) for v in values]
        signed = signer.sign(row[0], stamped, now_s)
        assert signed is not None
        out.append(encode_values(sorted(signed, key=lambda v: v.index)))
    return out


def floor_rows(count: int, now: datetime) -> Iterator[tuple[object, ...]]:
    samples = signed_samples(int(now.timestamp()))
    prefix_key = normalise(PREFIX)
    for n in range(count):
        handle = bulk_handle(n)
        yield (normalise(handle), handle, prefix_key, samples[n % SAMPLE], 1, now, now)


async def floor(server_dsn: str, database: str, rows: int) -> float:
    """Seconds to COPY ``rows`` records into ``handles`` of a scratch database, in
    chunks of one transaction each, as the import commits them."""
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{database}"')
    finally:
        await admin.close()
    dsn = with_database(server_dsn, database)
    try:
        conn = await asyncpg.connect(dsn)
        try:
            await migrate(conn)
            pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
            assert pool is not None
            await register_prefix(pool, datetime.now(UTC))
            await pool.close()
            lz4 = bool(await conn.fetchval(_LZ4))
            now = datetime.now(UTC)
            source = floor_rows(rows, now)
            chunks = [
                [next(source) for _ in range(min(CHUNK, rows - at))] for at in range(0, rows, CHUNK)
            ]
            started = time.perf_counter()
            for chunk in chunks:
                async with conn.transaction():
                    if lz4:  # as the import's transactions (registry/sql/queries/bulk.sql)
                        await conn.execute("SET LOCAL default_toast_compression = 'lz4'")
                    await conn.copy_records_to_table("handles", records=chunk, columns=_COLUMNS)
            return time.perf_counter() - started
        finally:
            await conn.close()
    finally:
        admin = await asyncpg.connect(server_dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        finally:
            await admin.close()


def with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + quote(database, safe="")))


# -- the registry the node serves ----------------------------------------------------------


async def prepare(dsn: str) -> None:
    """Migrated, the rolls' enterprise with 88.118 and 88.118.2, the roll template
    published, and READ_SET rolls for the reader."""
    await load_rolls(dsn, READ_SET, 16)
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    assert pool is not None
    try:
        registry = Registry(pool)
        now = datetime.now(UTC)
        if await registry.get_prefix("88.118") is None:
            await registry.add_prefix("88.118", CREDIT_CODE, now)
        body = HandleValue(1000, "IDIS_TEMPLATE", ROLL.to_json().encode("utf-8"))
        await registry.put_handle(parse_handle(ROLL.handle), [body], actor="bench", now=now)
    finally:
        await pool.close()


# -- (c) the reader --------------------------------------------------------------------


@dataclass
class Reads:
    cached: list[float] = field(default_factory=list)  # seconds per GET
    uncached: list[float] = field(default_factory=list)
    failed: int = 0


async def warm_up(base: str) -> None:
    """The hot set, read once: in the node's cache from now on."""
    async with aiohttp.ClientSession() as session:
        for n in range(HOT):
            async with session.get(f"{base}/api/handles/{roll_handle(n)}") as resp:
                if resp.status != 200:
                    raise BenchError(f"{roll_handle(n)}: HTTP {resp.status} from the node")
                await resp.read()


async def read_loop(base: str, rate: float, stop: asyncio.Event, fresh: Iterator[int]) -> Reads:
    """GETs at ``rate``/s in all, alternating a hot roll (in the cache: ``warm_up``) and
    a roll never asked before; each on its own task, so a slow answer does not slow the
    pace (an open loop)."""
    reads = Reads()
    pending: set[asyncio.Task[None]] = set()
    rng = random.Random(7)
    connector = aiohttp.TCPConnector(limit=32)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def get(n: int, into: list[float]) -> None:
            started = time.perf_counter()
            try:
                async with session.get(f"{base}/api/handles/{roll_handle(n)}") as resp:
                    await resp.read()
                    ok = resp.status == 200
            except aiohttp.ClientError:
                ok = False
            if ok:
                into.append(time.perf_counter() - started)
            else:
                reads.failed += 1

        interval = 1.0 / rate
        next_at = time.perf_counter()
        turn = 0
        while not stop.is_set():
            new = next(fresh, None) if turn % 2 else None
            # The cached half; the uncached one too once READ_SET is used up.
            if new is None:
                task = asyncio.create_task(get(rng.randrange(HOT), reads.cached))
            else:
                task = asyncio.create_task(get(new, reads.uncached))
            pending.add(task)
            task.add_done_callback(pending.discard)
            turn += 1
            next_at += interval
            delay = next_at - time.perf_counter()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
        if pending:
            await asyncio.gather(*pending)
    return reads


def percentiles(samples: list[float]) -> tuple[float | None, float | None]:
    if len(samples) < 2:
        return None, None
    cuts = quantiles(samples, n=100, method="inclusive")
    return cuts[49] * 1000, cuts[98] * 1000


# -- (b) the import, with the reader running --------------------------------------------------


@dataclass
class ImportRun:
    seconds: float
    summary: dict[str, object]
    cpu_s: float  # the import process and its workers


async def run_import(
    dsn: str, data_dir: Path, path: Path, processes: int | None
) -> tuple[ImportRun, str]:
    args = [
        sys.executable,
        "-m",
        "node.cli",
        "import",
        str(path),
        "--template",
        ROLL.handle,
        "--database-url",
        dsn,
        "--data-dir",
        str(data_dir),
        "--rejects",
        str(OUT / "bulk_import_rejects.ndjson"),
    ]
    if processes is not None:
        args += ["--processes", str(processes)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *args,
        env=node_env(),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await proc.communicate()
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise BenchError(f"idnode import failed ({proc.returncode}): {err.decode()[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return ImportRun(seconds, json.loads(out), cpu), err.decode()


async def measure(dsn: str, server_dsn: str, args: argparse.Namespace, csv_path: Path) -> list[Row]:
    say = print
    say(f"# (a) floor: COPY {args.rows} pre-encoded signed records into handles (scratch db)")
    scratch = unquote(urlsplit(dsn).path.lstrip("/")) + "_bulk_floor"
    floor_s = await floor(server_dsn, scratch, args.rows)
    floor_rate = args.rows / floor_s
    say(f"#     {floor_s:.1f} s, {floor_rate:,.0f} rows/s")
    await prepare(dsn)
    data_dir = Path(tempfile.mkdtemp(prefix="idnode-bulk-node-"))
    node = start_idnode(dsn, data_dir, name="bulk_import_node", prefixes="88.118")
    try:
        base = f"http://127.0.0.1:{node.http_port}"
        fresh = iter(range(HOT, READ_SET))
        await warm_up(base)
        stop = asyncio.Event()
        say(f"# (c) resolution, idle node: {args.idle_seconds:g} s at {args.read_rate:g} GETs/s")
        reader = asyncio.create_task(read_loop(base, args.read_rate, stop, fresh))
        await asyncio.sleep(args.idle_seconds)  # a measuring window, not a wait for an event
        stop.set()
        idle = await reader
        say(f"# (b) idnode import {csv_path.name}, the reader running")
        stop = asyncio.Event()
        reader = asyncio.create_task(read_loop(base, args.read_rate, stop, fresh))
        run, stderr = await run_import(dsn, data_dir, csv_path, args.processes)
        (OUT / "bulk_import_cli.log").write_text(stderr, encoding="utf-8")
        stop.set()
        busy = await reader
    finally:
        node.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    summary = run.summary
    if summary.get("loaded") != args.rows:
        raise BenchError(f"the import loaded {summary.get('loaded')} of {args.rows}: {summary}")
    rate = args.rows / run.seconds
    goal_s = GOAL_S * args.rows / 1_000_000
    rows = [
        Row(
            "a floor",
            "COPY pre-encoded into handles",
            floor_rate,
            ratio=1.0,
            ratio_of="floor",
            detail=f"{floor_s:.1f} s for {args.rows} rows",
        ),
        Row(
            "b import",
            "idnode import CSV (check+sign+load)",
            rate,
            ratio=rate / floor_rate,
            ratio_of="floor",
            goal=f"<{goal_s:.0f} s",
            ok=run.seconds < goal_s,
            detail=f"{run.seconds:.1f} s total; CPU {run.cpu_s:.0f} s in the importer; "
            f"{summary.get('rate')} rows/s after start-up",
        ),
    ]
    for label in ("cached", "uncached"):
        p99s = {}
        windows = (("idle", idle, args.idle_seconds), ("import", busy, run.seconds))
        for when, reads, seconds in windows:
            got: list[float] = getattr(reads, label)
            p50, p99 = percentiles(got)
            p99s[when] = p99
            ratio = p99 / p99s["idle"] if when == "import" and p99 and p99s["idle"] else None
            rows.append(
                Row(
                    "c resolve",
                    f"{label} GET, {when}",
                    len(got) / seconds,
                    p50,
                    p99,
                    ratio=ratio,
                    ratio_of="idle" if ratio is not None else "",
                    detail=f"{len(got)} GETs, {reads.failed} failed",
                )
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--read-rate", type=float, default=200.0, help="reader GETs/s")
    parser.add_argument("--processes", type=int, help="idnode import --processes")
    parser.add_argument(
        "--idle-seconds", type=float, default=5.0, help="the reader on the idle node first"
    )
    parser.add_argument("--database-url", help="a server to use (else a throwaway embedded one)")
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    csv_path = OUT / f"bulk_rolls_{args.rows}.csv"
    print(f"# writing {csv_path.name}" if not csv_path.exists() else f"# reusing {csv_path.name}")
    write_csv(csv_path, args.rows)
    run_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    try:
        if args.database_url:
            rows = asyncio.run(measure(args.database_url, args.database_url, args, csv_path))
        else:
            with embedded_registry() as pg:
                rows = asyncio.run(measure(pg.dsn, pg.dsn, args, csv_path))
    except BenchError as exc:
        print(f"bulk_import: {exc}", file=sys.stderr)
        return 1
    print(f"# {run_at}  rows={args.rows}  read rate={args.read_rate:g}/s")
    for line in format_table(rows):
        print(line)
    append_csv(OUT / "bulk_import.csv", run_at, f"rows={args.rows}", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
