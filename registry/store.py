"""The registry: enterprises, prefixes and handle records in PostgreSQL via asyncpg.

Every write runs in one transaction that also appends the history row, so a write is
acknowledged (the coroutine returns) only after both are committed. Times come in as
arguments: the registry never reads a clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from protocol.creditcode import credit_code_problem
from protocol.errors import HandleSyntaxError
from protocol.handle import Handle, normalise, parse_prefix
from protocol.valuecodec import decode_values, encode_values
from protocol.values import HandleValue
from registry.batch import Change, Outcome, apply_changes
from registry.driver import Conn, translated
from registry.errors import Conflict, NotFound, RegistryError
from registry.migrate import Migration, applied_versions, migrate
from registry.queries import q
from registry.readbatch import ReadBatcher
from registry.recordrules import (
    MAX_FIELD_CHARS,
    same_content,
    stamp,
    storage_prefixes,
    unusable_prefix,
)
from registry.rows import (
    Enterprise,
    FieldRows,
    HistoryEntry,
    HistoryPage,
    LoggedEntry,
    Prefix,
    PrefixStatus,
    PutResult,
    RawRecord,
    Record,
    RecordAt,
    ResignProgress,
)

MAX_PAGE_SIZE = 10000
SEARCH_COUNT_BOUND = 10000  # search totals are counted this far, then "more than"
HISTORY_PAGE = 100  # history entries read at once unless asked otherwise
MAX_HISTORY_PAGE = 1000


def _check_version(handle: Handle, row: Any, expected: int | None) -> None:
    if expected is None:
        return
    current = 0 if row is None else int(row["version"])
    if current != expected:
        raise Conflict(f"handle {handle.text} changed while this write was checked; retry")


def _check_unique_indexes(values: Sequence[HandleValue]) -> None:
    seen: set[int] = set()
    for v in values:
        if v.index in seen:
            raise RegistryError(f"value index {v.index} appears twice")
        seen.add(v.index)


def _prefix(row: Any) -> Prefix:
    return Prefix(
        row["prefix"],
        row["prefix_key"],
        PrefixStatus(row["status"]),
        row["credit_code"],
        row["enterprise_name"],
        row["created_at"],
        row["updated_at"],
    )


class Registry:
    """Every method commits before it returns, and raises only ``registry.errors``
    (driver errors are translated at this boundary, ``registry.driver``)."""

    def __init__(self, pool: asyncpg.Pool[Any], *, target: str = "the registry database"):
        self.pool = pool
        self.target = target  # where the database is, for messages (no password)
        # Resolution reads, coalesced per loop turn into one query (registry.readbatch).
        self.reads = ReadBatcher(self._read_raw)

    async def close(self) -> None:
        await self.pool.close()

    @translated
    @translated
    async def ping(self) -> None:
        await self.pool.fetchval("SELECT 1")

    @translated
    async def migrate(self) -> list[Migration]:
        """Apply every migration not yet applied (under an advisory lock: several nodes
        may start at once); return those applied now."""
        async with self.pool.acquire() as conn:
            return await migrate(conn)

    @translated
    async def schema_versions(self) -> list[int]:
        async with self.pool.acquire() as conn:
            return await applied_versions(conn)

    # -- enterprises -------------------------------------------------------------

    @translated
    async def add_enterprise(
        self, name: str, credit_code: str, contact: str, now: datetime, status: int = 1
    ) -> Enterprise:
        problem = credit_code_problem(credit_code)
        if problem:
            raise RegistryError(problem)
        if not name.strip():
            raise RegistryError("enterprise name is empty")
        try:
            row = await self.pool.fetchrow(
                q("add_enterprise"), name, credit_code, contact, status, now
            )
        except asyncpg.UniqueViolationError:
            raise Conflict(f"an enterprise with credit code {credit_code} already exists") from None
        except asyncpg.CheckViolationError as exc:
            raise RegistryError(f"enterprise rejected: {exc.constraint_name}") from None
        assert row is not None
        return Enterprise(**dict(row))

    @translated
    async def list_enterprises(self) -> list[Enterprise]:
        return [Enterprise(**dict(r)) for r in await self.pool.fetch(q("list_enterprises"))]

    @translated
    async def get_enterprise(self, credit_code: str) -> Enterprise | None:
        row = await self.pool.fetchrow(q("get_enterprise_by_code"), credit_code)
        return Enterprise(**dict(row)) if row else None

    # -- prefixes ----------------------------------------------------------------

    @translated
    async def add_prefix(
        self,
        prefix: str,
        credit_code: str,
        now: datetime,
        status: PrefixStatus = PrefixStatus.ENABLED,
    ) -> None:
        try:
            parse_prefix(prefix)
        except HandleSyntaxError as exc:
            raise RegistryError(str(exc)) from None
        status = PrefixStatus(status)
        async with self.pool.acquire() as conn, conn.transaction():
            ent = await conn.fetchrow(q("get_enterprise_by_code"), credit_code)
            if ent is None:
                raise NotFound(f"no enterprise with credit code {credit_code}")
            try:
                await conn.execute(
                    q("add_prefix"), normalise(prefix), prefix, ent["id"], int(status), now
                )
            except asyncpg.UniqueViolationError:
                raise Conflict(f"prefix {prefix} is already registered") from None

    @translated
    async def list_prefixes(self) -> list[Prefix]:
        return [_prefix(r) for r in await self.pool.fetch(q("list_prefixes"))]

    @translated
    async def get_prefix(self, prefix: str) -> Prefix | None:
        row = await self.pool.fetchrow(q("get_prefix"), normalise(prefix))
        return _prefix(row) if row else None

    @translated
    async def set_prefix_status(self, prefix: str, status: PrefixStatus, now: datetime) -> None:
        status = PrefixStatus(status)
        if (
            await self.pool.fetchval(q("set_prefix_status"), normalise(prefix), int(status), now)
            is None
        ):
            raise NotFound(f"prefix {prefix} is not registered")

    # -- homed prefixes (native HOME_NA / UNHOME_NA) ------------------------------

    @translated
    async def home_prefix(self, prefix: str, actor: str, now: datetime) -> bool:
        """Home ``prefix`` here; False when it already was."""
        try:
            parse_prefix(prefix)
        except HandleSyntaxError as exc:
            raise RegistryError(str(exc)) from None
        return (
            await self.pool.fetchval(q("home_prefix"), normalise(prefix), prefix, actor, now)
            is not None
        )

    @translated
    async def unhome_prefix(self, prefix: str) -> bool:
        """Unhome ``prefix``; False when it was not homed."""
        return await self.pool.fetchval(q("unhome_prefix"), normalise(prefix)) is not None

    @translated
    async def list_homed_prefixes(self) -> list[str]:
        return [r["prefix"] for r in await self.pool.fetch(q("list_homed_prefixes"))]

    # -- handles -----------------------------------------------------------------

    @translated
    async def get_handle(self, key: str) -> Record | None:
        """One indexed read by normalised key (``protocol.handle.normalise``)."""
        row = await self.pool.fetchrow(q("get_handle"), key)
        if row is None:
            return None
        return Record(
            row["handle"],
            decode_values(row["values"]),
            row["version"],
            row["created_at"],
            row["updated_at"],
        )

    @translated
    async def get_handle_raw(self, key: str) -> RawRecord | None:
        """The resolution read: one indexed row, values left in wire form. Concurrent
        reads share one query (``registry.readbatch``); errors are those of a single read."""
        return await self.reads.get(key)

    async def _read_raw(self, keys: list[str]) -> list[Any]:
        """(handle_key, handle, values, version) of those of ``keys`` that exist."""
        if len(keys) == 1:  # the common case at low load: the single-key statement
            row = await self.pool.fetchrow(q("get_handle_raw"), keys[0])
            return [] if row is None else [(keys[0], row[0], row[1], row[2])]
        return await self.pool.fetch(q("get_handles_raw"), keys)

    async def _check_prefix(self, conn: Conn, handle: Handle) -> str:
        candidates = storage_prefixes(handle)
        for prefix in candidates:
            status = await conn.fetchval(q("prefix_for_write"), normalise(prefix))
            if status is not None:
                break
        problem = unusable_prefix(prefix, None if status is None else PrefixStatus(status))
        if problem is not None:
            raise problem
        return normalise(prefix)

    @translated
    async def put_handle(
        self,
        handle: Handle,
        values: Sequence[HandleValue],
        *,
        actor: str,
        now: datetime,
        overwrite: bool = True,
        only_indexes: frozenset[int] | None = None,
        keep_timestamps: bool = False,
        expected_version: int | None = None,
        fields: FieldRows | None = None,
    ) -> PutResult:
        """Create or change a handle. ``fields``: the record's entries in the field index
        (replacing the handle's; a unique value another handle holds is a Conflict).

        ``expected_version``: the version the caller checked permissions against (0:
        it did not exist); if another writer got in between, Conflict and no change.

        ``overwrite=False``: create only; an existing handle with the same content is
        success (clients retry creates after a gateway timeout), otherwise Conflict.
        ``only_indexes``: replace or add just these indexes, keeping the others.
        """
        _check_unique_indexes(values)
        now_s = int(now.timestamp())
        key = handle.key
        async with self.pool.acquire() as conn, conn.transaction():
            prefix_key = await self._check_prefix(conn, handle)
            row = await conn.fetchrow(q("lock_handle"), key)
            _check_version(handle, row, expected_version)
            if row is None:
                new = (
                    tuple(sorted(values, key=lambda v: v.index))
                    if keep_timestamps
                    else stamp(values, (), now_s)
                )
                wire = encode_values(new)
                version = await conn.fetchval(
                    q("insert_handle"), key, handle.text, prefix_key, wire, now
                )
                if version is None:
                    raise Conflict(f"handle {handle.text} was created concurrently; retry")
                await _store_fields(conn, key, prefix_key, fields)
                await conn.execute(
                    q("add_history"), key, handle.text, "create", actor, now, 1, None, wire
                )
                return PutResult(Record(handle.text, new, 1, now, now), created=True, changed=True)

            old = decode_values(row["values"])
            if only_indexes is not None:
                kept = [v for v in old if v.index not in only_indexes]
                values = kept + [v for v in values if v.index in only_indexes]
            if keep_timestamps:
                new = tuple(sorted(values, key=lambda v: v.index))
            else:
                new = stamp(values, old, now_s)
            same = len(new) == len(old) and all(
                same_content(a, b) for a, b in zip(new, old, strict=True)
            )
            if not overwrite and only_indexes is not None:
                held = {v.index: v for v in old}
                for v in new:
                    if (
                        v.index in only_indexes
                        and v.index in held
                        and not same_content(held[v.index], v)
                    ):
                        raise Conflict(
                            f"handle {row['handle']} already has a value at index {v.index}"
                        )
            elif not overwrite and not same:
                raise Conflict(f"handle {row['handle']} already exists with different values")
            if same and not keep_timestamps:
                rec = Record(
                    row["handle"], old, row["version"], row["created_at"], row["updated_at"]
                )
                return PutResult(rec, created=False, changed=False)
            wire = encode_values(new)
            version = await conn.fetchval(q("update_handle"), key, wire, now)
            await _store_fields(conn, key, prefix_key, fields)
            await conn.execute(
                q("add_history"),
                key,
                row["handle"],
                "modify",
                actor,
                now,
                version,
                row["values"],
                wire,
            )
            rec = Record(row["handle"], new, version, row["created_at"], now)
            return PutResult(rec, created=False, changed=True)

    @translated
    async def delete_handle(
        self,
        handle: Handle,
        *,
        actor: str,
        now: datetime,
        indexes: frozenset[int] | None = None,
        expected_version: int | None = None,
        fields: FieldRows | None = None,
    ) -> Record | None:
        """Delete the handle, or only the given value indexes (returns the new record then;
        ``fields``: its field index entries after the removal)."""
        key = handle.key
        async with self.pool.acquire() as conn, conn.transaction():
            prefix_key = await self._check_prefix(conn, handle)
            row = await conn.fetchrow(q("lock_handle"), key)
            if row is None:
                raise NotFound(f"handle {handle.text} does not exist")
            _check_version(handle, row, expected_version)
            if indexes is None:
                await conn.execute(q("delete_handle"), key)
                await conn.execute(
                    q("add_history"),
                    key,
                    row["handle"],
                    "delete",
                    actor,
                    now,
                    row["version"] + 1,
                    row["values"],
                    None,
                )
                return None
            old = decode_values(row["values"])
            missing = indexes - {v.index for v in old}
            if missing:
                raise NotFound(f"handle {row['handle']} has no value at index {min(missing)}")
            new = tuple(v for v in old if v.index not in indexes)
            wire = encode_values(new)
            version = await conn.fetchval(q("update_handle"), key, wire, now)
            await _store_fields(conn, key, prefix_key, fields)
            await conn.execute(
                q("add_history"),
                key,
                row["handle"],
                "modify",
                actor,
                now,
                version,
                row["values"],
                wire,
            )
            return Record(row["handle"], new, version, row["created_at"], now)

    @translated
    async def get_handles(self, keys: Sequence[str]) -> dict[str, Record]:
        """The records of these handle keys that exist, by key (one round trip)."""
        rows = await self.pool.fetch(q("get_handles"), list(keys))
        return {
            r["handle_key"]: Record(
                r["handle"],
                decode_values(r["values"]),
                r["version"],
                r["created_at"],
                r["updated_at"],
            )
            for r in rows
        }

    @translated
    async def list_templates(
        self, prefix: str | None = None, after: str = "", limit: int = 1000
    ) -> list[tuple[str, str]]:
        """(handle, handle key) of template records, of one prefix or all, in key order
        after ``after``."""
        key = normalise(prefix) if prefix else None
        rows = await self.pool.fetch(q("list_templates"), key, after, limit)
        return [(r["handle"], r["handle_key"]) for r in rows]

    @translated
    async def apply_changes(
        self, changes: Sequence[Change], now: datetime, *, atomic: bool
    ) -> list[Outcome]:
        """Write prepared changes in one transaction (``registry.batch``): per change,
        the stored record (None after a delete) or the RegistryError that refused it.
        Atomic: BatchRefused and nothing written unless every change passes."""
        if not changes:
            return []
        async with self.pool.acquire() as conn:
            return await apply_changes(conn, changes, now, atomic=atomic)

    @translated
    async def search_fields(
        self,
        prefixes: Sequence[str] | None,
        template: str,
        field: str,
        value: str,
        *,
        after: str = "",
        limit: int = 100,
        unique: bool = False,
    ) -> tuple[int, list[str], str | None]:
        """Handles under ``prefixes`` (None: every registered prefix) whose ``template``
        field ``field`` holds ``value``, in handle key order after the key ``after``:
        (total, a page of at most ``limit``, the next page's cursor or None). Keyset
        paging: every page is index range scans, however deep. The total counts matches
        whatever ``after``, up to SEARCH_COUNT_BOUND + 1 (more: "more than the bound").
        ``unique``: a field that is ``unique`` but not ``indexed`` (in handle_unique)."""
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise RegistryError(f"page size must be 1..{MAX_PAGE_SIZE}, not {limit}")
        keys = None if prefixes is None else sorted({normalise(p) for p in prefixes})
        args = (keys, normalise(template), field, value[:MAX_FIELD_CHARS])
        search, count = (
            ("search_unique", "count_unique") if unique else ("search_fields", "count_fields")
        )
        total = int(await self.pool.fetchval(q(count), *args, SEARCH_COUNT_BOUND + 1))
        if total == 0:
            return 0, [], None
        rows = await self.pool.fetch(q(search), *args, normalise(after), limit + 1)
        page = rows[:limit]
        cursor = page[-1]["handle_key"] if len(rows) > limit else None
        return total, [r["handle"] for r in page], cursor

    @translated
    async def list_handles(
        self, prefix: str, page: int = 0, page_size: int = 1000
    ) -> tuple[int, list[str]]:
        """Handles under an enterprise prefix, in key order: (total count, one page)."""
        if page < 0 or not 0 <= page_size <= MAX_PAGE_SIZE:
            raise RegistryError(f"page must be >= 0 and page size 0..{MAX_PAGE_SIZE}")
        key = normalise(prefix)
        total = await self.pool.fetchval(q("count_handles"), key)
        if page_size == 0:
            return total, []
        rows = await self.pool.fetch(q("list_handles"), key, page_size, page * page_size)
        return total, [r["handle"] for r in rows]

    @translated
    async def history(self, handle: Handle, limit: int = HISTORY_PAGE) -> list[HistoryEntry]:
        """The newest ``limit`` entries, oldest first (``history_page`` reads further back)."""
        page = await self.history_page(handle, limit=limit)
        return [logged.entry for logged in reversed(page.entries)]

    # -- bulk re-signing (node.writes.resign) ----------------------------------------------

    @translated
    async def resign_batch(
        self, after_key: str, prefix: str | None, limit: int
    ) -> list[tuple[str, str]]:
        """(handle, handle key) of the next ``limit`` handles after ``after_key``, in key
        order; ``prefix`` (88.118 covers 88.118.2) or every prefix."""
        prefix_key = normalise(prefix) if prefix else None
        rows = await self.pool.fetch(q("resign_next_batch"), after_key, prefix_key, limit)
        return [(r["handle"], r["handle_key"]) for r in rows]

    @translated
    async def resign_remaining(self, after_key: str, prefix: str | None) -> int:
        prefix_key = normalise(prefix) if prefix else None
        return int(await self.pool.fetchval(q("resign_count"), after_key, prefix_key))

    @translated
    async def resign_progress(self, job: str) -> ResignProgress | None:
        row = await self.pool.fetchrow(q("resign_progress_get"), job)
        return ResignProgress(row["last_key"], row["done"]) if row is not None else None

    @translated
    async def save_resign_progress(self, job: str, progress: ResignProgress, now: datetime) -> None:
        await self.pool.execute(
            q("resign_progress_save"), job, progress.last_key, progress.done, now
        )

    @translated
    async def clear_resign_progress(self, job: str) -> None:
        await self.pool.execute(q("resign_progress_clear"), job)

    # -- history: bounded pages, and a record as of a time (docs/rest-api.md "History") --

    @translated
    async def history_page(
        self, handle: Handle, *, limit: int = HISTORY_PAGE, before: int | None = None
    ) -> HistoryPage:
        """Newest first: at most ``limit`` entries older than the one numbered ``before``
        (a ``LoggedEntry.seq``, as ``HistoryPage.older`` hands it out; None: the newest)."""
        if not 1 <= limit <= MAX_HISTORY_PAGE:
            raise RegistryError(f"history page size must be 1..{MAX_HISTORY_PAGE}, got {limit}")
        rows = await self.pool.fetch(q("history_page"), handle.key, before, limit + 1)
        entries = tuple(LoggedEntry(r["id"], _history_entry(r)) for r in rows[:limit])
        return HistoryPage(entries, entries[-1].seq if len(rows) > limit else None)

    @translated
    async def record_at(self, handle: Handle, at: datetime) -> RecordAt | None:
        """The record as it stood at ``at`` (aware): the values of the last write at or
        before it; None when the handle did not exist then (not yet created, or deleted).
        A write at exactly ``at`` counts as done."""
        if at.tzinfo is None:
            raise RegistryError(
                "record_at needs a time with a zone (a naive datetime is ambiguous)"
            )
        row = await self.pool.fetchrow(q("history_at"), handle.key, at)
        if row is None or row["new_values"] is None:
            return None
        return RecordAt(
            row["handle"],
            decode_values(row["new_values"]),
            row["version"],
            row["at"],
            row["actor"],
        )


async def _store_fields(conn: Conn, key: str, prefix_key: str, fields: FieldRows | None) -> None:
    """Replace the handle's field index entries; a unique value held by another handle
    of the prefix is a Conflict (and the whole write rolls back)."""
    if fields is None:
        return
    await conn.execute(q("clear_fields"), key)
    await conn.execute(q("clear_unique"), key)
    if fields.indexed:
        templates, names, values = zip(*fields.indexed, strict=True)
        await conn.execute(
            q("add_fields"),
            prefix_key,
            key,
            [normalise(t) for t in templates],
            list(names),
            [v[:MAX_FIELD_CHARS] for v in values],
        )
    for template, name, value in fields.unique:
        holder = await conn.fetchval(
            q("claim_unique"), prefix_key, normalise(template), name, value[:MAX_FIELD_CHARS], key
        )
        if holder != key:
            raise Conflict(
                f"{name} {value!r} is already used by {holder} (unique within the prefix)"
            )


def _history_entry(r: Any) -> HistoryEntry:
    return HistoryEntry(
        r["handle"],
        r["action"],
        r["actor"],
        r["at"],
        r["version"],
        decode_values(r["old_values"]) if r["old_values"] is not None else None,
        decode_values(r["new_values"]) if r["new_values"] is not None else None,
    )
