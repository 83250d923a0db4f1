"""The registry: enterprises, prefixes and handle records in PostgreSQL via asyncpg.

Every write runs in one transaction that also appends the history row, so a write is
acknowledged (the coroutine returns) only after both are committed. Times come in as
arguments: the registry never reads a clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import asyncpg

from protocol.creditcode import credit_code_problem
from protocol.errors import HandleSyntaxError
from protocol.handle import Handle, normalise, parse_prefix, prefix_ancestors
from protocol.valuecodec import decode_values, encode_values
from protocol.values import HandleValue
from registry.driver import Conn, translated
from registry.errors import Conflict, NotFound, RegistryError, UnknownPrefix
from registry.migrate import Migration, applied_versions, migrate
from registry.queries import q
from registry.rows import (
    Enterprise,
    HistoryEntry,
    Prefix,
    PrefixStatus,
    PutResult,
    RawRecord,
    Record,
    ResignProgress,
)

MAX_PAGE_SIZE = 10000


def _same_content(a: HandleValue, b: HandleValue) -> bool:
    """Equal apart from the timestamp, which the registry sets."""
    return replace(a, timestamp=0) == replace(b, timestamp=0)


def stamp(
    new: Iterable[HandleValue], old: Sequence[HandleValue], now_s: int
) -> tuple[HandleValue, ...]:
    """Give changed and added values the write time; unchanged ones keep theirs."""
    before = {v.index: v for v in old}
    out = []
    for v in new:
        prev = before.get(v.index)
        keep = prev is not None and _same_content(prev, v)
        out.append(replace(v, timestamp=prev.timestamp if keep and prev else now_s))
    return tuple(sorted(out, key=lambda v: v.index))


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


def storage_prefixes(handle: Handle) -> tuple[str, ...]:
    """The registered prefix a handle is kept under, in the order to look: its own; and
    for a prefix record 0.NA/X.Y without a registration of its own, its nearest
    registered ancestor (a top-level node keeps its secondaries' 0.NA records under its
    own prefix; a parent's admins create derived ones: docs/authentication.md)."""
    if handle.is_prefix_record:
        return tuple(prefix_ancestors(handle.owning_prefix))
    return (handle.owning_prefix,)


def unusable_prefix(prefix: str, status: PrefixStatus | None) -> UnknownPrefix | None:
    """Why handles under ``prefix`` cannot be written, naming its status; None if they can."""
    if status is None:
        return UnknownPrefix(f"prefix {prefix} is not registered on this node")
    if status != PrefixStatus.ENABLED:
        return UnknownPrefix(
            f"prefix {prefix} is {status.label} (status {int(status)}), not enabled"
        )
    return None


class Registry:
    """Every method commits before it returns, and raises only ``registry.errors``
    (driver errors are translated at this boundary, ``registry.driver``)."""

    def __init__(self, pool: asyncpg.Pool[Any], *, target: str = "the registry database"):
        self.pool = pool
        self.target = target  # where the database is, for messages (no password)

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
        """The resolution read: one indexed row, values left in wire form."""
        row = await self.pool.fetchrow(q("get_handle_raw"), key)
        if row is None:
            return None
        return RawRecord(row[0], row[1], row[2])

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
    ) -> PutResult:
        """Create or change a handle.

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
                _same_content(a, b) for a, b in zip(new, old, strict=True)
            )
            if not overwrite and only_indexes is not None:
                held = {v.index: v for v in old}
                for v in new:
                    if (
                        v.index in only_indexes
                        and v.index in held
                        and not _same_content(held[v.index], v)
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
    ) -> Record | None:
        """Delete the handle, or only the given value indexes (returns the new record then)."""
        key = handle.key
        async with self.pool.acquire() as conn, conn.transaction():
            await self._check_prefix(conn, handle)
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
    async def history(self, handle: Handle) -> list[HistoryEntry]:
        rows = await self.pool.fetch(q("list_history"), handle.key)
        return [
            HistoryEntry(
                r["handle"],
                r["action"],
                r["actor"],
                r["at"],
                r["version"],
                decode_values(r["old_values"]) if r["old_values"] is not None else None,
                decode_values(r["new_values"]) if r["new_values"] is not None else None,
            )
            for r in rows
        ]

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
