"""The growth benchmark's datasets: one kept embedded PostgreSQL per step (100k, 1M, 10M
rolls) under ``loadtest/out/growth-pg/<label>/``, filled by COPY and resumable.

The rolls are ``loadtest.bulkload.load_rolls``'s: the records ``Registry.put_handle``
would store, COPYed straight into ``handles`` in chunks of 100k, one transaction each
(the registry's own bulk path, registry/bulk.py, COPYs the same way and adds history
and field-index rows the resolver never reads). Chunks commit in roll order, so the
table always holds rolls ``0..k-1`` for some k: a load cut short is resumed by finding
k (a binary search over primary-key lookups, ~25 of them, where a count over 10M rows
would take a minute) and COPYing from there. Each step has a directory of its own so
the table the miss path reads has exactly that many rows; a lock file keeps two
processes off one server (the second would adopt the first's postmaster and stop it).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import asyncpg

from loadtest.bulkload import CHUNK, load_rolls
from loadtest.harness import OUT, BenchError, hold_lock
from loadtest.rolls import roll_handle
from protocol.handle import normalise
from registry.embedded import EmbeddedPostgres

GROWTH_DIR = OUT / "growth-pg"
MARKER_FORMAT = 1
MAX_ROLLS = 10**7  # roll numbers have 7 digits (loadtest.rolls.roll_handle)
# A 10M load writes ~10 GB of WAL: with the 1 GB default a checkpoint every ~150k rows
# would write every page twice more (full-page images). Reads are not affected.
_LOAD_SETTINGS = {"max_wal_size": "4GB", "checkpoint_timeout": "15min"}
# Benchmark SQL on our own table and keys; no user data is composed into it.
_EXISTS = "SELECT 1 FROM handles WHERE handle_key = $1"
_SIZES = """
SELECT pg_relation_size('handles') AS heap,
       pg_table_size('handles') AS table_all,
       pg_indexes_size('handles') AS indexes,
       pg_relation_size('handles_pkey') AS pkey,
       current_setting('shared_buffers') AS shared_buffers
"""
_OTHERS = """
SELECT count(*) FROM pg_stat_activity
WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
"""
_STATIO = """
SELECT heap_blks_read, heap_blks_hit, idx_blks_read, idx_blks_hit
FROM pg_statio_user_tables WHERE relname = 'handles'
"""


def label(rolls: int) -> str:
    """100000 -> "100k", 1000000 -> "1M", 2500000 -> "2.5M"."""
    if rolls >= 1_000_000:
        return f"{rolls / 1_000_000:g}M"
    if rolls >= 1000:
        return f"{rolls / 1000:g}k"
    return str(rolls)


@dataclass(frozen=True)
class LoadReport:
    rolls: int
    added: int
    seconds: float

    @property
    def rows_per_s(self) -> float:
        return self.added / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class Sizes:
    heap: int  # the table's main fork (pg_relation_size)
    table_all: int  # with TOAST, free-space and visibility maps (pg_table_size)
    indexes: int  # both indexes (pg_indexes_size)
    pkey: int  # the primary key the miss path reads through
    shared_buffers: str


@dataclass(frozen=True)
class BufferUse:
    """Block reads of ``handles`` between two snapshots: hits found the block in
    shared_buffers; reads went to the kernel (its page cache, or the disk)."""

    heap_read: int
    heap_hit: int
    idx_read: int
    idx_hit: int

    @staticmethod
    def ratio(hit: int, read: int) -> float | None:
        return hit / (hit + read) if hit + read else None

    @property
    def heap_ratio(self) -> float | None:
        return self.ratio(self.heap_hit, self.heap_read)

    @property
    def idx_ratio(self) -> float | None:
        return self.ratio(self.idx_hit, self.idx_read)

    def __sub__(self, other: BufferUse) -> BufferUse:
        return BufferUse(
            self.heap_read - other.heap_read,
            self.heap_hit - other.heap_hit,
            self.idx_read - other.idx_read,
            self.idx_hit - other.idx_hit,
        )


async def rolls_present(conn: asyncpg.Connection, upper: int = MAX_ROLLS) -> int:
    """k such that rolls 0..k-1 are in the table and roll k is not (rolls are loaded in
    order, chunk by chunk, so there is one such k)."""

    async def exists(n: int) -> bool:
        return await conn.fetchval(_EXISTS, normalise(roll_handle(n))) is not None

    lo, hi = 0, upper  # invariant: rolls < lo exist; roll hi does not (or hi == upper)
    while lo < hi:
        mid = (lo + hi) // 2
        if await exists(mid):
            lo = mid + 1
        else:
            hi = mid
    return lo


async def read_sizes(dsn: str) -> Sizes:
    conn = await asyncpg.connect(dsn)
    try:
        r = await conn.fetchrow(_SIZES)
    finally:
        await conn.close()
    assert r is not None
    return Sizes(r["heap"], r["table_all"], r["indexes"], r["pkey"], r["shared_buffers"])


async def read_buffer_use(dsn: str, settle_s: float = 15.0) -> BufferUse:
    """The cumulative block counters of ``handles``, once every other client's backend
    has exited: a backend adds its counts when it exits (before it leaves
    pg_stat_activity), and the node closing its pool does not wait for that."""
    conn = await asyncpg.connect(dsn)
    try:
        for _ in range(round(settle_s / 0.05)):  # a bounded wait: polls of pg_stat_activity
            if not await conn.fetchval(_OTHERS):
                break
            await asyncio.sleep(0.05)
        r = await conn.fetchrow(_STATIO)
    finally:
        await conn.close()
    if r is None:
        return BufferUse(0, 0, 0, 0)
    return BufferUse(*(int(r[i] or 0) for i in range(4)))


class GrowthDataset:
    """``rolls`` rolls in a kept embedded PostgreSQL: ``open()``, ``ensure()``, ``close()``."""

    def __init__(self, rolls: int, root: Path = GROWTH_DIR):
        if not 1 <= rolls <= MAX_ROLLS:
            raise BenchError(f"rolls must be 1..{MAX_ROLLS}, not {rolls}")
        self.rolls = rolls
        self.directory = root / label(rolls)
        self.marker = self.directory / "dataset.json"
        self.server = EmbeddedPostgres(self.directory / "data")
        self._lock: IO[str] | None = None

    @property
    def dsn(self) -> str:
        return self.server.dsn

    def open(self) -> None:
        """Take the directory's lock and start (or create) the server."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.directory.chmod(0o711)  # run as root, PostgreSQL (another user) passes through
        self._lock = hold_lock(self.directory / "lock", str(self.directory))
        self.server.initialise()
        self.server.start(timeout_s=300.0)  # recovery after an interrupted load takes a while
        asyncio.run(self._tune())

    async def _tune(self) -> None:
        conn = await asyncpg.connect(self.dsn)
        try:
            for name, value in _LOAD_SETTINGS.items():
                # ALTER SYSTEM takes no parameters; both are our own constants.
                await conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
            await conn.execute("SELECT pg_reload_conf()")
        finally:
            await conn.close()

    def restart(self) -> None:
        """Stop and start the server: empty shared_buffers, as at the step's start (the
        kernel's page cache keeps what it holds)."""
        self.server.stop(mode="fast", timeout_s=600.0)
        self.server.start(timeout_s=300.0)

    def close(self) -> None:
        """Stop the server and release the lock; nothing when open() did not get the lock
        (the server is another process's then)."""
        if self._lock is None:
            return
        try:
            # fast: a checkpoint (minutes after a big load), so the next start needs no recovery
            self.server.stop(mode="fast", timeout_s=600.0)
        finally:
            self._lock.close()
            self._lock = None

    def _read_marker(self) -> dict[str, object]:
        try:
            marker = json.loads(self.marker.read_text())
        except (OSError, ValueError):
            return {}
        return marker if isinstance(marker, dict) else {}

    def _write_marker(self, fields: int, vacuumed: int) -> None:
        self.marker.write_text(
            json.dumps({"format": MARKER_FORMAT, "fields": fields, "vacuumed": vacuumed})
        )

    def present(self) -> int:
        async def count() -> int:
            conn = await asyncpg.connect(self.dsn)
            try:
                if not await conn.fetchval("SELECT to_regclass('handles') IS NOT NULL"):
                    return 0
                return await rolls_present(conn)
            finally:
                await conn.close()

        return asyncio.run(count())

    def ensure(
        self, fields: int, progress: Callable[[str], None], *, load: bool = True
    ) -> LoadReport:
        """Load what is missing (from where an earlier load stopped), then VACUUM once so
        the measured reads find hint bits set and write nothing. ``load=False``: only
        check, and fail if rolls are missing."""
        name = label(self.rolls)
        marker = self._read_marker()
        if marker and (marker.get("format") != MARKER_FORMAT or marker.get("fields") != fields):
            raise BenchError(
                f"{self.directory} holds rolls with {marker.get('fields')} fields, not {fields}: "
                f"delete that directory to rebuild it"
            )
        have = self.present()
        if have > self.rolls:
            raise BenchError(f"{self.directory} holds {have} rolls, more than {self.rolls}")
        started = time.perf_counter()
        if have < self.rolls:
            if not load:
                raise BenchError(
                    f"{name}: {have} of {self.rolls} rolls loaded; run "
                    f"`nice -n 10 python -m loadtest.growth --load-only --steps {self.rolls}` first"
                )
            self._write_marker(fields, 0)
            progress(f"{name}: {have} rolls there, loading {self.rolls - have} more by COPY")
            asyncio.run(
                load_rolls(
                    self.dsn,
                    self.rolls,
                    fields,
                    have=have,
                    progress=_RateProgress(name, have, self.rolls, progress),
                )
            )
        seconds = time.perf_counter() - started
        if marker.get("vacuumed") != self.rolls:
            progress(f"{name}: VACUUM (ANALYZE) handles ...")
            began = time.perf_counter()
            asyncio.run(_vacuum(self.dsn))
            progress(f"{name}: vacuumed in {time.perf_counter() - began:.0f} s")
        self._write_marker(fields, self.rolls)
        return LoadReport(self.rolls, self.rolls - have, seconds)


async def _vacuum(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("VACUUM (ANALYZE) handles", timeout=None)
    finally:
        await conn.close()


class _RateProgress:
    """load_rolls reports each committed chunk; say how far, and at what rate."""

    def __init__(self, name: str, have: int, want: int, say: Callable[[str], None]):
        self.name, self.have, self.want, self.say = name, have, want, say
        self.started = self.last = time.perf_counter()
        self.done = have

    def __call__(self, line: str) -> None:
        now = time.perf_counter()
        chunk = min(CHUNK, self.want - self.done)
        self.done += chunk
        overall = (self.done - self.have) / max(now - self.started, 1e-9)
        left = (self.want - self.done) / overall if overall else 0.0
        self.say(
            f"{self.name}: {self.done}/{self.want} rolls; this chunk {chunk / max(now - self.last, 1e-9):.0f} "
            f"rows/s, overall {overall:.0f} rows/s, ~{left / 60:.0f} min to go"
        )
        self.last = now
