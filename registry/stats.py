"""Figures about the registry as a whole, for the node's periodic gauges
(node.runtime.gauges): identifiers per prefix and enterprise, the database's size, the
docking outbox by state, unfinished bulk imports. Each is one query, run every gauge
interval, never per request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from registry.driver import translated
from registry.queries import q


@dataclass(frozen=True, slots=True)
class PrefixCount:
    prefix: str  # as registered
    credit_code: str  # its enterprise's
    enterprise_name: str
    identifiers: int  # handles under it


@dataclass(frozen=True, slots=True)
class ImportsUnderway:
    jobs: int  # import jobs not finished (running, or interrupted and resumable)
    loaded: int  # their handles created so far
    existing: int  # rows found already there, unchanged
    rejected: int  # rows refused


class RegistryStats:
    def __init__(self, pool: asyncpg.Pool[Any], *, target: str = "the registry database"):
        self.pool = pool
        self.target = target

    @translated
    async def identifiers(self) -> list[PrefixCount]:
        """Every registered prefix with its handle count, the largest first."""
        rows = await self.pool.fetch(q("stats_identifiers"))
        return [
            PrefixCount(r["prefix"], r["credit_code"], r["enterprise_name"], int(r["identifiers"]))
            for r in rows
        ]

    @translated
    async def database_bytes(self) -> int:
        """The registry database's size on disk (``pg_database_size``)."""
        return int(await self.pool.fetchval(q("stats_database_bytes")))

    @translated
    async def docking_states(self) -> dict[str, int]:
        """Prefixes in the docking outbox by state: pending, failed, docked, withdrawn."""
        return {r["state"]: int(r["prefixes"]) for r in await self.pool.fetch(q("stats_docking"))}

    @translated
    async def imports(self) -> ImportsUnderway:
        row = await self.pool.fetchrow(q("stats_imports"))
        assert row is not None  # an aggregate without GROUP BY: always one row
        return ImportsUnderway(
            int(row["jobs"]), int(row["loaded"]), int(row["existing"]), int(row["rejected"])
        )
