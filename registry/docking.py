"""The docking outbox (migration 0006): what this node should have registered at the
top-level node, per prefix, and how delivering it went. ``node.docking`` decides what
to want and sends it; this is only the durable part."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from protocol.handle import normalise
from registry.driver import translated
from registry.queries import q


@dataclass(frozen=True, slots=True)
class Wanted:
    prefix: str
    action: str  # register | withdraw
    derived_from: str | None  # the own prefix a derived prefix is registered under
    payload: bytes  # values, wire form (empty for withdraw)


@dataclass(frozen=True, slots=True)
class Claimed:
    prefix: str
    action: str
    derived_from: str | None
    payload: bytes
    version: int
    attempts: int


@dataclass(frozen=True, slots=True)
class DockingRow:
    prefix: str
    action: str
    derived_from: str | None
    version: int
    state: str  # pending | docked | failed | withdrawn
    attempts: int
    next_attempt_at: datetime
    last_attempt_at: datetime | None
    last_error: str
    updated_at: datetime


class DockingOutbox:
    def __init__(self, pool: asyncpg.Pool[Any], *, target: str = "the registry database"):
        self.pool = pool
        self.target = target

    @translated
    async def want(self, wanted: Wanted, now: datetime) -> bool:
        """Record what should be upstream for a prefix; True when that changed (the row
        is pending again), False when it was wanted already."""
        changed = await self.pool.fetchval(
            q("docking_want"),
            normalise(wanted.prefix),
            wanted.prefix,
            wanted.action,
            wanted.derived_from,
            wanted.payload,
            now,
        )
        return changed is not None

    @translated
    async def claim(self, now: datetime, lease_until: datetime, limit: int) -> list[Claimed]:
        rows = await self.pool.fetch(q("docking_claim"), now, lease_until, limit)
        return [
            Claimed(
                r["prefix"],
                r["action"],
                r["derived_from"],
                bytes(r["payload"]),
                r["version"],
                r["attempts"],
            )
            for r in rows
        ]

    @translated
    async def acknowledged(self, prefix: str, version: int, now: datetime) -> bool:
        return (
            await self.pool.fetchval(q("docking_acknowledged"), normalise(prefix), version, now)
            is not None
        )

    @translated
    async def failed(
        self, prefix: str, version: int, error: str, retry_at: datetime, now: datetime
    ) -> bool:
        return (
            await self.pool.fetchval(
                q("docking_failed"), normalise(prefix), version, error[:500], retry_at, now
            )
            is not None
        )

    @translated
    async def rows(self) -> list[DockingRow]:
        return [
            DockingRow(
                r["prefix"],
                r["action"],
                r["derived_from"],
                r["version"],
                r["state"],
                r["attempts"],
                r["next_attempt_at"],
                r["last_attempt_at"],
                r["last_error"],
                r["updated_at"],
            )
            for r in await self.pool.fetch(q("docking_rows"))
        ]

    @translated
    async def next_due(self) -> datetime | None:
        due: datetime | None = await self.pool.fetchval(q("docking_next_due"))
        return due
