"""A registry full of textile rolls for the benchmarks: a throwaway embedded PostgreSQL
(or an existing server), migrated, with one enterprise, prefix 88.118.2 and N greige-roll
identifiers shaped like the demo's (URL at 1, HS_ADMIN at 100, TEMPLATE at 1001, roll
fields at 2000+ from the ``TPL.TEXTILE.ROLL.V1`` template).

Seeding bypasses ``Registry.put_handle`` (one transaction and a history row per handle)
and COPYs wire-encoded records straight in, so 100k identifiers take seconds. The
records are what ``put_handle`` would store: ``protocol.valuecodec`` bytes keyed by
``protocol.handle.normalise``; ``check_record`` proves it for the first one.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from cryptography.hazmat.primitives.asymmetric import ec

from node.demo.templates import ROLL
from protocol.creditcode import check_character
from protocol.handle import normalise, parse_handle
from protocol.jose import SigningKey
from protocol.jsonvalues import data_from_json
from protocol.recordsig import with_signature
from protocol.valuecodec import decode_values, encode_values, value_to_wire
from protocol.values import HandleValue
from registry.embedded import EmbeddedPostgres
from registry.errors import Conflict
from registry.migrate import migrate
from registry.store import Registry

PREFIX = "88.118.2"
NODE_PREFIX = "88.118"  # what the node is told to serve (--prefixes)
ENTERPRISE = "吴江盛泽压测丝绸织造有限公司"  # invented, like every name in the demo
# GB 32100: authority 9, kind 1, Wujiang 320509, organisation code MA7BENCH1, check.
CREDIT_CODE = "91320509MA7BENCH1" + check_character("91320509MA7BENCH1")
TRACE_SITE = "https://trace.example.com/h/"
MAX_FIELDS = len(ROLL.fields)

# Greige pongee (涤纶春亚纺), in template order; the varying ones are filled per roll.
_FIELDS: dict[str, str] = {
    "fabricCode": "30121000750721010",
    "productName": "涤纶春亚纺",
    "stage": "坯布",
    "composition": "100% 涤纶",
    "yarnCount": "经 75D/72F FDY，纬 75D/72F DTY",
    "weave": "平纹",
    "widthCm": "150",
    "weightGsm": "62",
    "colour": "",  # varies
    "rollNumber": "",  # varies
    "rollLengthM": "",  # varies
    "grade": "一等品",
    "mill": ENTERPRISE,
    "productionDate": "",  # varies
    "dyeLot": "DL-20260316-02",
    "certificate": "https://example.com/reports/FIN-000503.pdf",
}
_COLOURS = ("本白", "漂白", "黑", "藏青", "大红", "墨绿", "卡其", "浅灰")
_LENGTHS = ("100.0", "99.5", "100.5", "98.0", "101.0", "97.5", "100.0", "99.0")
_DAYS = tuple(f"2026-03-{d:02d}" for d in range(1, 29))
_CHOICES = {"colour": _COLOURS, "rollLengthM": _LENGTHS, "productionDate": _DAYS}
_PICK: dict[str, Callable[[int], int]] = {
    "colour": lambda n: n % len(_COLOURS),
    "rollLengthM": lambda n: (n // 8) % len(_LENGTHS),
    "productionDate": lambda n: (n // 64) % len(_DAYS),
}


def _roll_number(n: int) -> str:
    return f"P2026{n:07d}"


def _choice_of(key: str) -> Callable[[int], str]:
    return lambda n: _CHOICES[key][_PICK[key](n)]


_VARYING: dict[str, Callable[[int], str]] = {
    "rollNumber": _roll_number,
    **{key: _choice_of(key) for key in _CHOICES},
}


def roll_handle(n: int) -> str:
    return f"{PREFIX}/ROLL-2026-{n:07d}"


class RollRecords:
    """Wire-encoded records for roll n, built from pre-encoded pieces: only the URL and
    the roll number are encoded per roll (~15 µs instead of ~70 µs for the whole here)."""

    def __init__(self, fields: int, now_s: int):
        if not 0 <= fields <= MAX_FIELDS:
            raise ValueError(f"fields must be 0..{MAX_FIELDS}")
        self.now_s = now_s
        self.items = ROLL.fields[:fields]
        self.value_count = 3 + fields
        admin = data_from_json(
            {
                "format": "admin",
                "value": {"handle": f"{PREFIX}/ADMIN", "index": 300, "permissions": "111111111111"},
            }
        )
        self._fixed = (
            HandleValue(100, "HS_ADMIN", admin, timestamp=now_s),
            HandleValue(1001, "TEMPLATE", ROLL.handle.encode(), timestamp=now_s),
        )
        self._count = self.value_count.to_bytes(4, "big")
        self._head = b"".join(value_to_wire(v) for v in self._fixed)
        # Per field: None (encode per roll), a tuple to pick from by n, or fixed bytes.
        self._pieces: list[tuple[int, str, tuple[bytes, ...] | bytes | None]] = []
        for item in self.items:
            piece: tuple[bytes, ...] | bytes | None
            if item.key == "rollNumber":
                piece = None
            elif item.key in _CHOICES:
                piece = tuple(self._wire(item.index, item.key, c) for c in _CHOICES[item.key])
            else:
                piece = self._wire(item.index, item.key, _FIELDS[item.key])
            self._pieces.append((item.index, item.key, piece))

    def _value(self, index: int, vtype: str, text: str) -> HandleValue:
        return HandleValue(index, vtype, text.encode("utf-8"), timestamp=self.now_s)

    def _wire(self, index: int, vtype: str, text: str) -> bytes:
        return value_to_wire(self._value(index, vtype, text))

    def values(self, n: int) -> list[HandleValue]:
        """The record as values: the slow path that ``wire`` must equal."""
        out = [self._value(1, "URL", TRACE_SITE + roll_handle(n)), *self._fixed]
        for item in self.items:
            if item.key in _VARYING:
                out.append(self._value(item.index, item.key, _VARYING[item.key](n)))
            else:
                out.append(self._value(item.index, item.key, _FIELDS[item.key]))
        return out

    def wire(self, n: int) -> bytes:
        """u32 count + values, as ``encode_values(self.values(n))``."""
        parts = [self._count, self._wire(1, "URL", TRACE_SITE + roll_handle(n)), self._head]
        for index, key, piece in self._pieces:
            if piece is None:
                parts.append(self._wire(index, key, _VARYING[key](n)))
            elif isinstance(piece, tuple):
                parts.append(piece[_PICK[key](n)])
            else:
                parts.append(piece)
        return b"".join(parts)

    def check_record(self, n: int) -> None:
        """The fast encoding must be exactly the codec's, and decode back."""
        slow = encode_values(self.values(n))
        if self.wire(n) != slow or list(decode_values(slow)) != self.values(n):
            raise AssertionError(f"fast encoding of roll {n} differs from encode_values")


# The handles table is the one in registry/sql/migrations/0001_initial.sql. An existing
# database may hold these rolls from an earlier run: COPY into a temp table, then upsert,
# touching only our own keys (benchmark SQL, no user data composed into it).
_STAGE = "CREATE TEMP TABLE bench_rolls (LIKE handles INCLUDING DEFAULTS) ON COMMIT DROP"
_UPSERT = (
    "INSERT INTO handles SELECT * FROM bench_rolls ON CONFLICT (handle_key) DO UPDATE "
    'SET handle = EXCLUDED.handle, prefix_key = EXCLUDED.prefix_key, "values" = EXCLUDED."values", '
    "version = handles.version + 1, updated_at = EXCLUDED.updated_at"
)
_COLUMNS = ("handle_key", "handle", "prefix_key", "values", "version", "created_at", "updated_at")


@dataclass(frozen=True)
class Seeded:
    count: int
    value_count: int
    record_bytes: int  # of one record's values (u32 count + values)
    seconds: float


def signed_wire(records: RollRecords, signer: SigningKey | None) -> Callable[[int], bytes]:
    """Roll n's stored bytes; with a signer, signed as the node signs (an HS_SIGNATURE at
    400 over the public values, ~2 KB of JWS), so resolution can be measured with and
    without the signature present."""
    if signer is None:
        return records.wire

    def wire(n: int) -> bytes:
        values = with_signature(
            roll_handle(n),
            records.values(n),
            signer,
            "400:0.NA/88.118",
            now=records.now_s,
            lifetime_s=86400 * 365,
            chain=("400:0.NA/88.118",),
        )
        return encode_values(values)

    return wire


async def register_prefix(pool: asyncpg.Pool, now: datetime) -> None:
    """The enterprise and prefix the rolls belong to (already there: left as they are)."""
    registry = Registry(pool)
    with suppress(Conflict):
        await registry.add_enterprise(ENTERPRISE, CREDIT_CODE, "压测 <bench@example.com>", now)
    with suppress(Conflict):
        await registry.add_prefix(PREFIX, CREDIT_CODE, now)


async def seed_rolls(dsn: str, count: int, fields: int, *, signed: bool = False) -> Seeded:
    """Migrate, register the enterprise and prefix (idempotent), COPY ``count`` rolls."""
    started = time.perf_counter()
    now = datetime.now(UTC)
    records = RollRecords(fields, int(now.timestamp()))
    records.check_record(0)
    signer = SigningKey(ec.generate_private_key(ec.SECP256R1()), "ES256") if signed else None
    wire_of = signed_wire(records, signer)
    parse_handle(roll_handle(count - 1))  # the syntax every seeded handle follows
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    assert pool is not None
    try:
        await register_prefix(pool, now)
        prefix_key = normalise(PREFIX)
        rows = (
            (normalise(h), h, prefix_key, wire_of(n), 1, now, now)
            for n in range(count)
            for h in (roll_handle(n),)
        )
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(_STAGE)
            await conn.copy_records_to_table("bench_rolls", records=rows, columns=_COLUMNS)
            await conn.execute(_UPSERT)
        async with pool.acquire() as conn:
            await conn.execute("ANALYZE handles")
    finally:
        await pool.close()
    value_count = records.value_count + (1 if signed else 0)
    return Seeded(count, value_count, len(wire_of(0)), time.perf_counter() - started)


@contextmanager
def embedded_registry() -> Iterator[EmbeddedPostgres]:
    """A fresh embedded PostgreSQL in a temp dir, started; removed with its dir after.

    The dir is 0711: run as root, PostgreSQL runs as another user (postgres) and must
    pass through it (tests/conftest.py ``traversable_temp_dir``).
    """
    base = Path(tempfile.mkdtemp(prefix="idnode-bench-pg-"))
    base.chmod(0o711)
    server = EmbeddedPostgres(base / "data")
    try:
        server.initialise()
        server.start()
        yield server
    finally:
        try:
            if server.is_initialised():
                server.stop(mode="immediate")  # nothing to keep
        finally:
            shutil.rmtree(base, ignore_errors=True)


def as_written(values: list[HandleValue]) -> list[HandleValue]:
    """A roll as the benchmarks that write through the node send it: with fewer fields
    than the roll template requires, without its TEMPLATE citation (the node refuses a
    record that cites a template it does not follow)."""
    if ROLL.problems(values):
        return [v for v in values if v.index != 1001]
    return values
