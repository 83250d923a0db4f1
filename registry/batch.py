"""Writing many prepared records in one transaction (batches, group commit).

A ``Change`` is a write the caller has already checked against the record it read: the
whole record to store (or a delete) and the version it read (0: the handle did not
exist). ``apply_changes`` checks, in one transaction, what only the database can
settle — the prefix is enabled, nobody wrote the handle since it was read, a unique
field value is free — and then writes every change that passed with one statement per
step for the whole batch (insert, update, delete, field index, history), so a batch
of 2,000 costs a handful of round trips rather than thousands.

``atomic``: the first failed check fails the whole batch (nothing is written). Otherwise
each change succeeds or fails on its own. A conflict the checks could not foresee (a
handle or unique value taken by a concurrent transaction between the checks and the
write) rolls the batch back and replays it change by change, each under a savepoint,
so one loser does not take the others with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from protocol.handle import Handle, normalise
from protocol.valuecodec import decode_values, encode_values
from protocol.values import HandleValue
from registry.driver import Conn
from registry.errors import Conflict, RegistryError
from registry.queries import q
from registry.recordrules import MAX_FIELD_CHARS, stamp, storage_prefixes, unusable_prefix
from registry.rows import FieldRows, PrefixStatus, Record


@dataclass(frozen=True, slots=True)
class Change:
    handle: Handle
    values: tuple[HandleValue, ...] | None  # the whole record to store; None: delete it
    expected_version: int  # what the caller read: 0 when the handle did not exist
    actor: str
    fields: FieldRows | None = None  # its field index entries (None: leave them)


# Per change: the record as stored (None after a delete), or why it was not written.
Outcome = Record | None | RegistryError


class _Race(Exception):
    """A concurrent transaction took what the checks found free."""


class BatchRefused(RegistryError):
    """An atomic batch failed its checks: nothing was written. ``failed`` maps the
    position of each change that failed to why (empty: a concurrent write got in
    between, named in the message)."""

    def __init__(self, failed: dict[int, RegistryError], message: str | None = None):
        self.failed = failed
        first = min(failed) if failed else None
        super().__init__(
            message
            or (
                f"{len(failed)} of the batch's changes failed; the first, change {first}: "
                f"{failed[first].message}"
                if first is not None
                else "the batch failed"
            )
        )


async def apply_changes(
    conn: Conn, changes: Sequence[Change], now: datetime, *, atomic: bool
) -> list[Outcome]:
    """Write ``changes`` and commit. Atomic: BatchRefused names every change that failed
    its checks, and nothing is written."""
    try:
        async with conn.transaction():
            return await _apply(conn, changes, now, atomic=atomic)
    except _Race as race:
        if atomic:
            raise BatchRefused({}, f"{race}; nothing was written") from None
    out: list[Outcome] = []
    for change in changes:  # one at a time, each under its own savepoint
        try:
            async with conn.transaction():
                out.append((await _apply(conn, [change], now, atomic=True))[0])
        except _Race as race:
            out.append(Conflict(str(race)))
        except BatchRefused as refused:
            out.append(refused.failed.get(0, refused))
        except RegistryError as exc:
            out.append(exc)
    return out


async def _apply(
    conn: Conn, changes: Sequence[Change], now: datetime, *, atomic: bool
) -> list[Outcome]:
    failed: dict[int, RegistryError] = {}

    def fail(i: int, exc: RegistryError) -> None:
        failed.setdefault(i, exc)

    # 1. Each handle's prefix, registered and enabled (held FOR SHARE until commit).
    candidates = [storage_prefixes(c.handle) for c in changes]
    wanted = sorted({normalise(p) for names in candidates for p in names})
    status = {r["prefix_key"]: r["status"] for r in await conn.fetch(q("batch_prefixes"), wanted)}
    prefix_of: dict[int, str] = {}
    for i, names in enumerate(candidates):
        found = next((p for p in names if normalise(p) in status), names[-1])
        key = normalise(found)
        raw = status.get(key)
        problem = unusable_prefix(found, None if raw is None else PrefixStatus(raw))
        if problem is not None:
            fail(i, problem)
        prefix_of[i] = key

    # 2. Nobody wrote a handle since the caller read it.
    keys = [c.handle.key for c in changes]
    rows = {r["handle_key"]: r for r in await conn.fetch(q("batch_lock"), sorted(set(keys)))}
    for i, change in enumerate(changes):
        row = rows.get(change.handle.key)
        current = 0 if row is None else int(row["version"])
        if i not in failed and current != change.expected_version:
            what = "was created" if current and not change.expected_version else "changed"
            fail(i, Conflict(f"handle {change.handle.text} {what} concurrently; retry"))

    # 3. Unique field values are free (held by nobody else, nor claimed twice here).
    claims = [
        (i, (prefix_of[i], normalise(t), f, v[:MAX_FIELD_CHARS]), c.handle.key)
        for i, c in enumerate(changes)
        if i not in failed and c.values is not None and c.fields is not None
        for t, f, v in c.fields.unique
    ]
    if claims:
        cols = list(zip(*(claim for _, claim, _ in claims), strict=True))
        holders = {
            (r["prefix_key"], r["template_key"], r["field"], r["value"]): r["handle_key"]
            for r in await conn.fetch(q("batch_unique_holders"), *map(list, cols))
        }
        for i, claim, key in claims:
            holder = holders.setdefault(claim, key)
            if holder != key:
                used = f"{claim[2]} {claim[3]!r} is already used by {holder}"
                fail(i, Conflict(used + " (unique within the prefix)"))

    if atomic and failed:
        raise BatchRefused(failed)

    # 4. Write what passed.
    todo = [(i, c) for i, c in enumerate(changes) if i not in failed]
    written = await _write(conn, todo, rows, prefix_of, now)
    return [failed.get(i, written.get(i)) for i in range(len(changes))]


async def _write(
    conn: Conn,
    todo: Sequence[tuple[int, Change]],
    rows: dict[str, Any],
    prefix_of: dict[int, str],
    now: datetime,
) -> dict[int, Record | None]:
    now_s = int(now.timestamp())
    inserts: list[tuple[int, Change, tuple[HandleValue, ...], bytes]] = []
    updates: list[tuple[int, Change, tuple[HandleValue, ...], bytes]] = []
    deletes: list[tuple[int, Change]] = []
    for i, c in todo:
        row = rows.get(c.handle.key)
        if c.values is None:
            deletes.append((i, c))
            continue
        old = decode_values(row["values"]) if row is not None else ()
        new = stamp(c.values, old, now_s)
        (updates if row is not None else inserts).append((i, c, new, encode_values(new)))

    out: dict[int, Record | None] = {}
    history: list[tuple[str, str, str, str, int, bytes | None, bytes | None]] = []
    if inserts:
        done = await conn.fetch(
            q("batch_insert"),
            [c.handle.key for _, c, _, _ in inserts],
            [c.handle.text for _, c, _, _ in inserts],
            [prefix_of[i] for i, _, _, _ in inserts],
            [wire for _, _, _, wire in inserts],
            now,
        )
        if len(done) != len(inserts):
            created = {r["handle_key"] for r in done}
            lost = next(c for _, c, _, _ in inserts if c.handle.key not in created)
            raise _Race(f"handle {lost.handle.text} was created concurrently; retry")
        for i, c, new, wire in inserts:
            out[i] = Record(c.handle.text, new, 1, now, now)
            history.append((c.handle.key, c.handle.text, "create", c.actor, 1, None, wire))
    if updates:
        done = await conn.fetch(
            q("batch_update"),
            [c.handle.key for _, c, _, _ in updates],
            [wire for _, _, _, wire in updates],
            now,
        )
        version = {r["handle_key"]: int(r["version"]) for r in done}
        for i, c, new, wire in updates:
            row = rows[c.handle.key]
            v = version[c.handle.key]
            out[i] = Record(row["handle"], new, v, row["created_at"], now)
            history.append((c.handle.key, row["handle"], "modify", c.actor, v, row["values"], wire))
    if deletes:
        await conn.execute(q("batch_delete"), [c.handle.key for _, c in deletes])
        for i, c in deletes:
            row = rows[c.handle.key]
            out[i] = None
            history.append(
                (
                    c.handle.key,
                    row["handle"],
                    "delete",
                    c.actor,
                    int(row["version"]) + 1,
                    row["values"],
                    None,
                )
            )
    await _write_fields(conn, [(i, c) for i, c, _, _ in inserts + updates], prefix_of)
    if history:
        await conn.execute(q("batch_history"), *map(list, zip(*history, strict=True)), now)
    return out


async def _write_fields(
    conn: Conn, written: Sequence[tuple[int, Change]], prefix_of: dict[int, str]
) -> None:
    with_fields = [(i, c) for i, c in written if c.fields is not None]
    if not with_fields:
        return
    keys = [c.handle.key for _, c in with_fields]
    await conn.execute(q("batch_clear_fields"), keys)
    await conn.execute(q("batch_clear_unique"), keys)
    indexed = [
        (prefix_of[i], normalise(t), f, v[:MAX_FIELD_CHARS], c.handle.key)
        for i, c in with_fields
        for t, f, v in c.fields.indexed  # type: ignore[union-attr]
    ]
    if indexed:
        await conn.execute(q("batch_add_fields"), *map(list, zip(*indexed, strict=True)))
    unique = [
        (prefix_of[i], normalise(t), f, v[:MAX_FIELD_CHARS], c.handle.key)
        for i, c in with_fields
        for t, f, v in c.fields.unique  # type: ignore[union-attr]
    ]
    if unique:
        claimed = await conn.fetch(q("batch_claim_unique"), *map(list, zip(*unique, strict=True)))
        if len(claimed) != len(unique):
            raise _Race("a unique field value was claimed concurrently; retry")
