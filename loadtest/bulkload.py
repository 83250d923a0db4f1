"""A million textile rolls in PostgreSQL in seconds, kept between runs.

The node's write path (authorisation, signing, a history row, one transaction per
handle) manages ~500 writes/s, so the cache benchmarks do not load through it: they
COPY wire-encoded records straight into ``handles``, the bytes ``Registry.put_handle``
would have stored (``loadtest.rolls.RollRecords``, checked against
``protocol.valuecodec.encode_values``), keyed by ``protocol.handle.normalise``.

``load_rolls`` appends rolls ``have..want-1`` to any registry (after migrating it and
registering the enterprise and prefix). ``BenchDataset`` keeps an embedded PostgreSQL
with the rolls in ``loadtest/out/bench-pg``: a marker file records how many rolls are in
and with how many fields, so the next run starts the server, applies any new migration,
checks the count and loads only what is missing (``--fresh-dataset`` starts over).

    .venv/bin/python -m loadtest.bulkload --rolls 1000000          # fill the kept dataset
    .venv/bin/python -m loadtest.bulkload --rolls 1000 --database-url postgresql://...
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import asyncpg

from loadtest.harness import OUT, BenchError, hold_lock
from loadtest.rolls import PREFIX, RollRecords, register_prefix, roll_handle
from protocol.handle import normalise
from registry.embedded import EmbeddedPostgres
from registry.migrate import migrate

DEFAULT_FIELDS = 8  # URL + HS_ADMIN + TEMPLATE + 8 roll fields: 573 bytes of wire values
CHUNK = 100_000  # rows per COPY (one transaction each: an interrupted load keeps its chunks)
DATASET_DIR = OUT / "bench-pg"
MARKER_FORMAT = 1
_COLUMNS = ("handle_key", "handle", "prefix_key", "values", "version", "created_at", "updated_at")
# Benchmark SQL on our own table and keys; no user data is composed into it.
_COUNT = "SELECT count(*) FROM handles WHERE prefix_key = $1 AND handle_key LIKE $2"
_TRIM = "DELETE FROM handles WHERE prefix_key = $1 AND handle_key LIKE $2 AND handle_key >= $3"
_ROLL_PATTERN = normalise(f"{PREFIX}/ROLL-2026-") + "_______"


@dataclass(frozen=True)
class Loaded:
    rolls: int  # rolls 0..rolls-1 are in the registry
    added: int  # of which this call COPYed
    seconds: float
    record_bytes: int  # wire values of one record
    value_count: int


async def count_rolls(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval(_COUNT, normalise(PREFIX), _ROLL_PATTERN))


async def rolls_in(dsn: str) -> int:
    """Rolls in the registry at ``dsn`` (0 before it is migrated)."""
    conn = await asyncpg.connect(dsn)
    try:
        exists = await conn.fetchval("SELECT to_regclass('handles') IS NOT NULL")
        return await count_rolls(conn) if exists else 0
    finally:
        await conn.close()


async def load_rolls(
    dsn: str,
    want: int,
    fields: int = DEFAULT_FIELDS,
    *,
    have: int = 0,
    progress: Callable[[str], None] = lambda line: None,
) -> Loaded:
    """Migrate, register, then COPY rolls ``have..want-1`` (``have``: already loaded,
    and anything from there on is deleted first, e.g. a chunk of an interrupted load)."""
    started = time.perf_counter()
    now = datetime.now(UTC)
    records = RollRecords(fields, int(now.timestamp()))
    records.check_record(0)
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    assert pool is not None
    prefix_key = normalise(PREFIX)
    try:
        await register_prefix(pool, now)
        async with pool.acquire() as conn:
            await conn.execute(_TRIM, prefix_key, _ROLL_PATTERN, normalise(roll_handle(have)))
            for first in range(have, want, CHUNK):
                last = min(want, first + CHUNK)
                rows = _rows(records, first, last, prefix_key, now)
                async with conn.transaction():
                    await conn.copy_records_to_table("handles", records=rows, columns=_COLUMNS)
                progress(
                    f"loaded rolls {first}..{last - 1} ({time.perf_counter() - started:.0f} s)"
                )
            if want > have:
                await conn.execute("ANALYZE handles")
    finally:
        await pool.close()
    return Loaded(
        want,
        max(0, want - have),
        time.perf_counter() - started,
        len(records.wire(0)),
        records.value_count,
    )


def _rows(
    records: RollRecords, first: int, last: int, prefix_key: str, now: datetime
) -> Iterator[tuple[str, str, str, bytes, int, datetime, datetime]]:
    for n in range(first, last):
        handle = roll_handle(n)
        yield normalise(handle), handle, prefix_key, records.wire(n), 1, now, now


class BenchDataset:
    """The kept embedded PostgreSQL holding rolls 0..rolls-1; start(), then stop()."""

    def __init__(self, directory: Path = DATASET_DIR):
        self.directory = directory
        self.marker = directory / "dataset.json"
        self.server = EmbeddedPostgres(directory / "data")
        self._lock: IO[str] | None = None  # held while this process uses the dataset

    def _take(self) -> None:
        """Hold the dataset for this process: a second benchmark started on it would
        stop its server when it ends, under the first one's feet. The lock lives beside
        the directory, not in it: starting over deletes the directory."""
        lock = self.directory.parent / f".{self.directory.name}.lock"
        self._lock = hold_lock(lock, f"the dataset in {self.directory}")

    @property
    def dsn(self) -> str:
        return self.server.dsn

    def _read_marker(self) -> dict[str, int]:
        try:
            marker = json.loads(self.marker.read_text())
        except (OSError, ValueError):
            return {}
        return marker if isinstance(marker, dict) else {}

    def _write_marker(self, rolls: int, fields: int) -> None:
        self.marker.write_text(
            json.dumps({"format": MARKER_FORMAT, "rolls": rolls, "fields": fields})
        )

    def start(
        self,
        rolls: int,
        fields: int,
        *,
        fresh: bool = False,
        progress: Callable[[str], None] = lambda line: None,
    ) -> Loaded:
        """Start the server (creating it if need be) with at least ``rolls`` rolls."""
        if self._lock is None:
            self._take()
        marker = self._read_marker()
        if fresh or (
            marker and (marker.get("format") != MARKER_FORMAT or marker.get("fields") != fields)
        ):
            progress(f"starting the dataset in {self.directory} over")
            self.wipe()
            marker = {}
        self.directory.mkdir(parents=True, exist_ok=True)
        self.directory.chmod(0o711)  # run as root, PostgreSQL (another user) passes through
        self.server.initialise()
        self.server.start()
        have = int(marker.get("rolls", 0))
        counted = asyncio.run(rolls_in(self.dsn))
        if counted != have:
            progress(
                f"dataset marker says {have} rolls, the table holds {counted}: reloading from {min(have, counted)}"
            )
            have = min(have, counted)
        # The marker goes first: should this load be cut short, the next run trims back.
        self._write_marker(min(have, rolls), fields)
        loaded = asyncio.run(
            load_rolls(self.dsn, max(rolls, have), fields, have=have, progress=progress)
        )
        self._write_marker(loaded.rolls, fields)
        return loaded

    def stop(self) -> None:
        if self._lock is None:
            return  # never started here (or another benchmark holds it): not ours to stop
        try:
            if self.server.is_initialised():
                self.server.stop(
                    mode="fast"
                )  # a clean checkpoint: the next start needs no recovery
        finally:
            self._lock.close()
            self._lock = None

    def wipe(self) -> None:
        if self.server.is_initialised():
            self.server.stop(mode="immediate")
        shutil.rmtree(self.directory, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rolls", type=int, default=1_000_000)
    p.add_argument("--fields", type=int, default=DEFAULT_FIELDS)
    p.add_argument("--database-url", help="load into this registry instead of the kept dataset")
    p.add_argument("--fresh-dataset", action="store_true", help="delete the kept dataset first")
    args = p.parse_args(argv)

    def say(line: str) -> None:
        print(line, file=sys.stderr)

    try:
        if args.database_url:
            loaded = asyncio.run(
                load_rolls(args.database_url, args.rolls, args.fields, progress=say)
            )
        else:
            dataset = BenchDataset()
            try:
                loaded = dataset.start(
                    args.rolls, args.fields, fresh=args.fresh_dataset, progress=say
                )
            finally:
                dataset.stop()
    except BenchError as exc:
        say(f"bulkload: {exc}")
        return 2
    print(
        f"{loaded.rolls} rolls ({loaded.added} added in {loaded.seconds:.1f} s), "
        f"{loaded.value_count} values, {loaded.record_bytes} B each"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
