"""Bulk import and export (docs/import.md): chunks of prepared records loaded in one
transaction each, and a job's progress committed with them.

``ImportStore.load_chunk`` checks a chunk against what the registry holds (prefixes
registered and enabled, handles already there, unique field values taken), then COPYs
the new handles, their history rows and field index entries straight into their
tables, records the refused rows and advances the job to the chunk's last line, all in
one transaction. A process killed mid-chunk leaves nothing of that chunk, and its next
run starts after the last committed one. COPY fires the statement-level notify trigger
of migration 0003 like any INSERT (tests/registry/test_bulk.py listens for it), so
caches hear of every new handle. (COPY straight in, rather than through a staging
table and INSERT ... SELECT ... ON CONFLICT, takes a quarter less of PostgreSQL's time
per chunk; a handle or unique value another writer takes between the checks and the
COPY fails the COPY, and the chunk is redone from its checks.)

Existing handles are never overwritten: one stored with the same content (timestamps
and signatures aside: a re-run signs afresh) counts as existing, one with other content
is a refused row, as are rows under a prefix that is not registered and enabled, and
rows claiming a unique field value another handle of the prefix holds. The caller
(node.writes.bulkimport) has validated, authorized, signed and encoded every row.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, NamedTuple

import asyncpg
import orjson

from protocol.recordsig import is_signature
from protocol.templates import Problem
from protocol.valuecodec import decode_values
from registry.driver import Conn, translated
from registry.errors import Conflict, NotFound
from registry.queries import q
from registry.recordrules import unusable_prefix
from registry.rows import PrefixStatus, RawRecord
from registry.store import Registry

ATTEMPTS = 3  # a chunk raced by concurrent writers is redone from scratch this often
# A chunk's statements move tens of megabytes: the pool's per-query deadline (db_timeout_s,
# sized for lookups) does not fit them. A chunk still has a deadline, not none.
CHUNK_TIMEOUT_S = 600.0
_HANDLES = ("handle_key", "handle", "prefix_key", "values", "version", "created_at", "updated_at")
_HISTORY = ("handle_key", "handle", "action", "actor", "at", "version", "old_values", "new_values")
_FIELDS = ("prefix_key", "template_key", "field", "value", "handle_key")


class ImportRow(NamedTuple):
    """One prepared record (a tuple: chunks cross process boundaries by the thousand)."""

    line: int  # in the input, for progress and for messages
    handle: str  # as written
    key: str  # protocol.handle.normalise(handle)
    prefix_key: str  # normalised owning prefix
    wire: bytes  # the whole record as stored: encode_values, timestamps set, signed
    template_key: str = ""  # normalised template handle the record cites, if any
    indexed: tuple[tuple[str, str], ...] = ()  # (field, value) of its searchable fields
    unique: tuple[tuple[str, str], ...] = ()  # (field, value) unique within the prefix


class Rejected(NamedTuple):
    """A refused row: where it was, which handle, why (and each field problem)."""

    line: int
    handle: str
    reason: str
    problems: tuple[Problem, ...] = ()


@dataclass(frozen=True, slots=True)
class ImportJob:
    job: str
    actor: str
    source: str
    through_line: int
    loaded: int
    existing: int
    rejected: int
    state: str  # "running" | "done"
    started_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class ChunkOutcome:
    job: ImportJob  # the progress as committed
    loaded: int = 0
    existing: int = 0
    rejected: tuple[Rejected, ...] = ()  # this chunk's, in line order
    skipped: bool = False  # an earlier run had committed these lines already


@dataclass
class _Sorted:
    """A chunk's rows after the checks made before any SQL."""

    to_load: list[ImportRow] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    repeats: list[tuple[ImportRow, ImportRow]] = field(default_factory=list)  # (row, first)


class _Raced(Exception):
    """A concurrent writer changed what the chunk was checked against: redo it."""


def _job(row: Any) -> ImportJob:
    return ImportJob(**dict(row))


def same_content(stored: bytes, new: bytes) -> bool:
    """The same record, timestamps and HS_SIGNATURE values aside."""
    if stored == new:
        return True

    def body(wire: bytes) -> list[Any]:
        return sorted(
            (replace(v, timestamp=0) for v in decode_values(wire) if not is_signature(v)),
            key=lambda v: v.index,
        )

    return body(stored) == body(new)


def problems_json(problems: Sequence[Problem]) -> str | None:
    if not problems:
        return None
    return orjson.dumps(
        [{"field": p.key, "index": p.index, "value": p.value, "rule": p.rule} for p in problems]
    ).decode()


def _problems(text: str | None) -> tuple[Problem, ...]:
    if not text:
        return ()
    return tuple(Problem(p["field"], p["index"], p["value"], p["rule"]) for p in orjson.loads(text))


def _split(rows: Iterable[ImportRow], blocked: dict[str, str]) -> _Sorted:
    """Refuse rows under an unusable prefix; of two rows naming one handle keep the first
    (the other is compared with it at the end); of two claiming one unique value, the
    first."""
    out = _Sorted()
    first: dict[str, ImportRow] = {}
    claims: dict[tuple[str, str, str, str], ImportRow] = {}
    for row in rows:
        why = blocked.get(row.prefix_key)
        if why is not None:
            out.rejected.append(Rejected(row.line, row.handle, why))
            continue
        prior = first.get(row.key)
        if prior is not None:
            out.repeats.append((row, prior))
            continue
        wanted = [(row.prefix_key, row.template_key, f, v) for f, v in row.unique]
        holder = next((claims[c] for c in wanted if c in claims), None)
        if holder is not None:
            taken = next(c for c in wanted if c in claims)
            out.rejected.append(
                Rejected(
                    row.line,
                    row.handle,
                    f"{taken[2]} {taken[3]!r} is already used by {holder.handle} "
                    f"(line {holder.line}; unique within the prefix)",
                )
            )
            continue
        claims.update((c, row) for c in wanted)
        first[row.key] = row
        out.to_load.append(row)
    return out


class ImportStore:
    """The bulk paths of one registry (its pool). Methods raise ``registry.errors`` only."""

    def __init__(self, registry: Registry, *, chunk_timeout_s: float = CHUNK_TIMEOUT_S):
        self.pool = registry.pool
        self.target = registry.target
        self.timeout_s = chunk_timeout_s
        self._lz4: bool | None = None

    @translated
    async def start_job(self, job: str, *, actor: str, source: str, now: datetime) -> ImportJob:
        """The job's progress, created empty the first time; Conflict when another actor
        started it (only they may resume it)."""
        await self.pool.execute(q("import_job_start"), job, actor, source, now)
        row = await self.pool.fetchrow(q("import_job_get"), job)
        assert row is not None
        found = _job(row)
        if found.actor != actor:
            raise Conflict(f"import job {job} was started by another admin ({found.actor})")
        return found

    @translated
    async def get_job(self, job: str) -> ImportJob | None:
        row = await self.pool.fetchrow(q("import_job_get"), job)
        return _job(row) if row is not None else None

    @translated
    async def finish_job(self, job: str, now: datetime) -> ImportJob:
        row = await self.pool.fetchrow(q("import_job_finish"), job, now)
        if row is None:
            raise NotFound(f"no import job {job}")
        return _job(row)

    @translated
    async def rejects(self, job: str, after_line: int = 0, limit: int = 10000) -> list[Rejected]:
        """The job's refused rows after ``after_line``, in line order (one page)."""
        rows = await self.pool.fetch(q("import_rejects_list"), job, after_line, limit)
        return [
            Rejected(r["line"], r["handle"], r["reason"], _problems(r["problems"])) for r in rows
        ]

    @translated
    async def export_batch(
        self, prefix_key: str, after_key: str, limit: int
    ) -> list[tuple[str, RawRecord]]:
        """(handle key, record) of the next ``limit`` handles under the prefix after
        ``after_key``, in key order."""
        rows = await self.pool.fetch(q("export_batch"), prefix_key, after_key, limit)
        return [(r[0], RawRecord(r[1], r[2], r[3])) for r in rows]

    @translated
    async def load_chunk(
        self,
        job: str,
        rows: Sequence[ImportRow],
        through_line: int,
        now: datetime,
        actor: str,
        *,
        refused: Sequence[Rejected] = (),
    ) -> ChunkOutcome:
        """Load ``rows`` and record ``refused`` (rows the caller refused before: invalid,
        not authorized) in one transaction that also moves the job to ``through_line``.
        Lines the job has committed already are left out (a second run of one job)."""
        for _attempt in range(ATTEMPTS):
            try:
                return await self._load(job, rows, through_line, now, actor, refused)
            except _Raced:
                continue
        raise Conflict(
            f"import job {job}: lines up to {through_line} kept being changed by other "
            "writers while loading; run the import again to resume"
        )

    async def _uses_lz4(self, conn: Conn) -> bool:
        if self._lz4 is None:
            self._lz4 = bool(await conn.fetchval(q("import_lz4_available")))
        return self._lz4

    async def _load(
        self,
        job: str,
        rows: Sequence[ImportRow],
        through_line: int,
        now: datetime,
        actor: str,
        refused: Sequence[Rejected],
    ) -> ChunkOutcome:
        t = self.timeout_s
        async with self.pool.acquire() as conn, conn.transaction():
            locked = await conn.fetchrow(q("import_job_lock"), job, timeout=t)
            if locked is None:
                raise NotFound(f"no import job {job}")
            progress = _job(locked)
            if progress.state != "running":
                raise Conflict(f"import job {job} is finished")
            done = progress.through_line
            if through_line <= done:
                return ChunkOutcome(progress, skipped=True)
            rows = [r for r in rows if r.line > done]
            refused = [r for r in refused if r.line > done]
            if await self._uses_lz4(conn):
                await conn.execute(q("import_use_lz4"), timeout=t)
            blocked = await _blocked_prefixes(conn, {r.prefix_key for r in rows}, t)
            split = _split(rows, blocked)
            rejected = list(refused) + split.rejected
            try:
                loaded, outcome = await _insert(conn, split.to_load, now, actor, t)
            except asyncpg.UniqueViolationError:
                raise _Raced from None  # taken meanwhile: redo the chunk from its checks
            existing = sum(1 for why in outcome.values() if why is None)
            rejected += [
                Rejected(r.line, r.handle, why)
                for r in split.to_load
                if (why := outcome.get(r.line)) is not None
            ]
            for row, prior in split.repeats:
                why = outcome.get(prior.line)
                if not same_content(prior.wire, row.wire):
                    why = (
                        f"line {prior.line} gave handle {prior.handle} other values; "
                        "a bulk import does not overwrite"
                    )
                if why is None:
                    existing += 1
                else:
                    rejected.append(Rejected(row.line, row.handle, why))
            rejected.sort(key=lambda r: r.line)
            if rejected:
                await conn.execute(
                    q("import_rejects_add"),
                    job,
                    [r.line for r in rejected],
                    [r.handle for r in rejected],
                    [r.reason for r in rejected],
                    [problems_json(r.problems) for r in rejected],
                    timeout=t,
                )
            advanced = await conn.fetchrow(
                q("import_job_advance"),
                job,
                through_line,
                loaded,
                existing,
                len(rejected),
                now,
                timeout=t,
            )
            return ChunkOutcome(_job(advanced), loaded, existing, tuple(rejected))


async def _blocked_prefixes(conn: Conn, keys: set[str], t: float) -> dict[str, str]:
    """Why rows under each unusable prefix are refused (not registered, not enabled)."""
    rows = await conn.fetch(q("import_prefixes"), sorted(keys), timeout=t)
    status = {r["prefix_key"]: PrefixStatus(r["status"]) for r in rows}
    out = {}
    for key in keys:
        problem = unusable_prefix(key, status.get(key))
        if problem is not None:
            out[key] = problem.message
    return out


async def _insert(
    conn: Conn, to_load: Sequence[ImportRow], now: datetime, actor: str, t: float
) -> tuple[int, dict[int, str | None]]:
    """Create the rows' handles; (how many, {line: None for an existing handle with
    the same content, else why the row is refused}) for the rows not created."""
    if not to_load:
        return 0, {}
    outcome: dict[int, str | None] = {}
    stored = {
        r["handle_key"]: r
        for r in await conn.fetch(q("import_existing"), [r.key for r in to_load], timeout=t)
    }
    for row in to_load:
        found = stored.get(row.key)
        if found is not None:
            outcome[row.line] = (
                None
                if same_content(bytes(found["values"]), row.wire)
                else f"handle {found['handle']} exists with other values; a bulk import "
                "does not overwrite"
            )
    claims = [(r, f, v) for r in to_load if r.line not in outcome for f, v in r.unique]
    if claims:
        taken = await conn.fetch(
            q("import_unique_taken"),
            [r.line for r, _, _ in claims],
            [r.key for r, _, _ in claims],
            [r.prefix_key for r, _, _ in claims],
            [r.template_key for r, _, _ in claims],
            [f for _, f, _ in claims],
            [v for _, _, v in claims],
            timeout=t,
        )
        for held in taken:
            outcome.setdefault(
                held["line"],
                f"{held['field']} {held['value']!r} is already used by {held['holder']} "
                "(unique within the prefix)",
            )
    new = [r for r in to_load if r.line not in outcome]
    if not new:
        return 0, outcome
    await conn.copy_records_to_table(
        "handles",
        records=[(r.key, r.handle, r.prefix_key, r.wire, 1, now, now) for r in new],
        columns=_HANDLES,
        timeout=t,
    )
    await conn.copy_records_to_table(
        "handle_history",
        records=[(r.key, r.handle, "create", actor, now, 1, None, r.wire) for r in new],
        columns=_HISTORY,
        timeout=t,
    )
    for table, entries in (("handle_fields", "indexed"), ("handle_unique", "unique")):
        records = [
            (r.prefix_key, r.template_key, f, v, r.key) for r in new for f, v in getattr(r, entries)
        ]
        if records:
            await conn.copy_records_to_table(table, records=records, columns=_FIELDS, timeout=t)
    return len(new), outcome
