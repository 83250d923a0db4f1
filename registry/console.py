"""The web console's shared state (migration 0010): login sessions, and the rows its
import pages read. Every worker process and every node on one registry sees the same
rows, so a browser may reach any of them (docs/console.md).

Sessions are named here by the SHA-256 digest of their cookie value only; the caller
hashes. Times come in as arguments (the node's wall clock): the registry reads none.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from registry.driver import translated
from registry.queries import q
from registry.store import Registry

# An arbitrary constant naming "console login" among advisory locks.
LOGIN_LOCK_ID = 0x1D0DE_0010


@dataclass(frozen=True, slots=True)
class SessionRow:
    digest: bytes
    identity: str  # the admin's handle
    identity_index: int
    scheme: str
    csrf: str
    lang: str | None
    created_at: datetime
    used_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class ConsoleImport:
    job: str
    actor: str
    source: str
    template: str
    total_rows: int
    through_line: int
    loaded: int
    existing: int
    rejected: int
    state: str  # "running" | "done"
    failure: str | None
    started_at: datetime
    updated_at: datetime  # the last chunk committed, or the running worker's last word


def _session(row: Any) -> SessionRow:
    return SessionRow(**{**dict(row), "digest": bytes(row["digest"])})


def _import(row: Any) -> ConsoleImport:
    return ConsoleImport(**{**dict(row), "template": row["template"] or ""})


class ConsoleStore:
    """The console's rows of one registry (its pool). Methods raise ``registry.errors``
    only."""

    def __init__(self, registry: Registry):
        self.pool = registry.pool
        self.target = registry.target

    # -- sessions ------------------------------------------------------------------

    @translated
    async def create_session(
        self,
        row: SessionRow,
        *,
        now: datetime,
        max_total: int,
        max_per_identity: int,
    ) -> None:
        """Insert ``row`` after ending every expired session and, to make room, the
        sessions used longest ago: of its identity beyond ``max_per_identity``, then of
        all beyond ``max_total`` (the new one counted)."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(q("console_session_lock"), LOGIN_LOCK_ID)
            await conn.execute(q("console_session_purge"), now)
            await conn.execute(
                q("console_session_evict_identity"),
                row.identity,
                row.identity_index,
                max(0, max_per_identity - 1),
            )
            await conn.execute(q("console_session_evict_total"), max(0, max_total - 1))
            await conn.execute(
                q("console_session_insert"),
                row.digest,
                row.identity,
                row.identity_index,
                row.scheme,
                row.csrf,
                row.lang,
                row.created_at,
                row.expires_at,
            )

    @translated
    async def get_session(self, digest: bytes, now: datetime) -> SessionRow | None:
        """The session of ``digest`` if it has not expired at ``now`` (an expired one is
        deleted in the same statement)."""
        row = await self.pool.fetchrow(q("console_session_get"), digest, now)
        return _session(row) if row is not None else None

    @translated
    async def touch_session(self, digest: bytes, used_at: datetime, expires_at: datetime) -> None:
        await self.pool.execute(q("console_session_touch"), digest, used_at, expires_at)

    @translated
    async def set_session_lang(self, digest: bytes, lang: str | None) -> None:
        await self.pool.execute(q("console_session_set_lang"), digest, lang)

    @translated
    async def delete_session(self, digest: bytes) -> None:
        await self.pool.execute(q("console_session_delete"), digest)

    @translated
    async def count_sessions(self) -> int:
        return int(await self.pool.fetchval(q("console_session_count")))

    # -- imports -------------------------------------------------------------------

    @translated
    async def start_import(
        self, job: str, *, actor: str, source: str, template: str, total_rows: int, now: datetime
    ) -> None:
        await self.pool.execute(
            q("console_import_start"), job, actor, source, total_rows, template, now
        )

    @translated
    async def fail_import(self, job: str, failure: str, now: datetime) -> None:
        await self.pool.execute(q("console_import_fail"), job, failure, now)

    @translated
    async def touch_import(self, job: str, now: datetime) -> None:
        await self.pool.execute(q("console_import_touch"), job, now)

    @translated
    async def get_import(self, job: str) -> ConsoleImport | None:
        row = await self.pool.fetchrow(q("console_import_get"), job)
        return _import(row) if row is not None else None

    @translated
    async def list_imports(self, actor: str | None, limit: int) -> list[ConsoleImport]:
        """Console imports of ``actor`` (everyone's for None), newest first."""
        return [_import(r) for r in await self.pool.fetch(q("console_import_list"), actor, limit)]
