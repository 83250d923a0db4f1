"""Migrations: idempotent, and safe when several nodes start at once."""

from __future__ import annotations

import asyncio

import asyncpg

from registry.migrate import applied_versions, available_migrations, migrate


async def test_migrate_applies_everything_once(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        first = await migrate(conn)
        assert [m.version for m in first] == [m.version for m in available_migrations()]
        assert await migrate(conn) == []
        assert await applied_versions(conn) == [m.version for m in available_migrations()]
        tables = {
            r["tablename"]
            for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
        assert {
            "enterprises",
            "prefixes",
            "handles",
            "handle_history",
            "schema_migrations",
        } <= tables
    finally:
        await conn.close()


async def test_concurrent_migrators_do_not_collide(database_url: str) -> None:
    conns = [await asyncpg.connect(database_url) for _ in range(4)]
    try:
        results = await asyncio.gather(*(migrate(c) for c in conns))
        # Exactly one of them applied the migrations; the others found nothing to do.
        applied = [r for r in results if r]
        assert len(applied) == 1
        assert len(applied[0]) == len(available_migrations())
        count = await conns[0].fetchval("SELECT count(*) FROM schema_migrations")
        assert count == len(available_migrations())
    finally:
        for c in conns:
            await c.close()


async def test_history_is_append_only(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await migrate(conn)
        await conn.execute(
            "INSERT INTO handle_history (handle_key, handle, action, actor, at, version)"
            " VALUES ('A/B', 'A/B', 'create', 'test', now(), 1)"
        )
        for sql in ("UPDATE handle_history SET actor = 'x'", "DELETE FROM handle_history"):
            try:
                await conn.execute(sql)
            except asyncpg.RaiseError as exc:
                assert "append-only" in str(exc)
            else:
                raise AssertionError(f"{sql} was allowed")
        assert await conn.fetchval("SELECT actor FROM handle_history") == "test"
    finally:
        await conn.close()
