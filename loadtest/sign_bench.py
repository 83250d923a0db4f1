"""Write throughput with and without record signing: registrations/s through
``WriteService`` with ``sign_records`` false and true (an ES256 key certified by an
embedded-style root, as the node uses), one at a time and in batches of 1,000 submitted
together. Prints one table; appends it to loadtest/out/sign_bench.csv.

    .venv/bin/python loadtest/sign_bench.py [--singles 500] [--batches 2] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import sys
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import asyncpg
from cryptography.hazmat.primitives.asymmetric import ec

from loadtest.rolls import RollRecords, embedded_registry, seed_rolls
from node.signing.signer import RecordSigner
from node.writes.service import WriteService
from protocol.handle import parse_handle
from protocol.jose import SigningKey
from registry.store import Registry

OUT = REPO / "loadtest" / "out"
BATCH = 1000
FIELDS = 10


def make_signer() -> RecordSigner:
    key = SigningKey(ec.generate_private_key(ec.SECP256R1()), "ES256", "bench")
    root = SigningKey(ec.generate_private_key(ec.SECP256R1()), "ES256", "root")
    return RecordSigner(key, 86400, root_key=root)


async def measure(dsn: str, singles: int, batches: int) -> list[tuple[str, str, int, float]]:
    await seed_rolls(dsn, 1, FIELDS)  # migrate, enterprise, prefix 88.118.2
    pool = await asyncpg.create_pool(dsn, min_size=4, max_size=16)
    assert pool is not None
    records = RollRecords(FIELDS, int(time.time()))
    rows: list[tuple[str, str, int, float]] = []
    run = f"{int(time.time())}"
    try:
        registry = Registry(pool)
        for signed in (False, True):
            writes = WriteService(registry, signer=make_signer() if signed else None)
            label = "signed" if signed else "unsigned"
            n = 0

            async def put(
                mode: str, i: int, writes: WriteService = writes, label: str = label
            ) -> None:
                handle = parse_handle(f"88.118.2/BENCH-{run}-{label}-{mode}-{i:07d}")
                await writes.put(
                    handle, records.values(i), actor="bench", now=datetime.now(UTC), source="bench"
                )

            started = time.perf_counter()
            for n in range(singles):
                await put("single", n)
            rows.append((label, "single", singles, singles / (time.perf_counter() - started)))
            started = time.perf_counter()
            for b in range(batches):
                await asyncio.gather(*(put("batch", b * BATCH + i) for i in range(BATCH)))
            total = batches * BATCH
            rows.append((label, f"batch {BATCH}", total, total / (time.perf_counter() - started)))
    finally:
        await pool.close()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--singles", type=int, default=500, help="sequential registrations per mode"
    )
    parser.add_argument(
        "--batches", type=int, default=2, help=f"batches of {BATCH} concurrent registrations"
    )
    parser.add_argument(
        "--database-url", help="an existing registry (default: a throwaway embedded one)"
    )
    args = parser.parse_args()
    with ExitStack() as stack:
        dsn = args.database_url or stack.enter_context(embedded_registry()).dsn
        rows = asyncio.run(measure(dsn, args.singles, args.batches))
    print(f"{'records':<10}{'mode':<12}{'count':>8}{'writes/s':>12}")
    for label, mode, count, rate in rows:
        print(f"{label:<10}{mode:<12}{count:>8}{rate:>12.0f}")
    OUT.mkdir(parents=True, exist_ok=True)
    with (OUT / "sign_bench.csv").open("a", newline="") as f:
        w = csv.writer(f)
        at = datetime.now(UTC).isoformat(timespec="seconds")
        for row in rows:
            w.writerow([at, *row[:3], f"{row[3]:.1f}"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
