"""Console sessions as registry rows (registry.console, migration 0010) against a real
PostgreSQL: idle and absolute lifetimes on a stepped wall clock, the bounds per identity
and in total with the session unused longest evicted, expired rows purged, the cookie
value never at rest, and one table shared by two session tables (two workers)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from node.auth import Identity
from node.fronts.http.console.sessions import TOUCH_S, ConsoleSessions, digest
from registry.console import ConsoleStore
from registry.migrate import migrate
from registry.store import Registry
from tests.node.http_support import SteppedClock

WHO = Identity("88.118.2/ADMIN", 300, "basic")
OTHER = Identity("88.118.3/ADMIN", 300, "basic")
T0 = 1_795_500_000.0


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[ConsoleStore]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    assert pool is not None
    async with pool.acquire() as conn:
        await migrate(conn)
    try:
        yield ConsoleStore(Registry(pool))
    finally:
        await pool.close()


def table(store: ConsoleStore, clock: SteppedClock, most: int = 3, **kw: Any) -> ConsoleSessions:
    return ConsoleSessions(
        store,
        max_sessions=most,
        max_per_identity=kw.pop("per_identity", most),
        idle_timeout_s=60,
        lifetime_s=300,
        clock=clock,
    )


async def test_idle_and_absolute_lifetimes(store: ConsoleStore) -> None:
    clock = SteppedClock(T0)
    sessions = table(store, clock)
    s = await sessions.create(WHO)
    assert len(s.id) >= 40 and s.csrf != s.id
    for _ in range(5):  # used every 59 s: idle never reached...
        clock.advance(59)
        got = await sessions.get(s.id)
        assert got is not None and (got.identity, got.csrf) == (WHO, s.csrf)
    clock.advance(59)  # ...but 295 s + 59 s is past the 300 s lifetime
    assert await sessions.get(s.id) is None
    assert await sessions.count() == 0  # the expired row went with the look
    t = await sessions.create(WHO)
    clock.advance(60)
    assert await sessions.get(t.id) is None  # idle 60 s
    for sid in (None, "", "nope", "x" * 10_000):
        assert await sessions.get(sid) is None


async def test_use_is_written_at_most_every_few_seconds(store: ConsoleStore) -> None:
    clock = SteppedClock(T0)
    sessions = table(store, clock)
    s = await sessions.create(WHO)
    clock.advance(TOUCH_S / 2)
    got = await sessions.get(s.id)
    assert got is not None and got.used == T0  # not written: too soon
    clock.advance(TOUCH_S)
    got = await sessions.get(s.id)
    assert got is not None and got.used == T0 + 1.5 * TOUCH_S
    # Idle counts from the last write: 60 s after it the session is gone.
    clock.advance(59)
    assert await sessions.get(s.id) is not None
    clock.advance(60)
    assert await sessions.get(s.id) is None


async def test_bounds_evict_the_session_unused_longest(store: ConsoleStore) -> None:
    clock = SteppedClock(T0)
    sessions = table(store, clock, most=3, per_identity=2)
    a = await sessions.create(WHO)
    clock.advance(TOUCH_S)
    b = await sessions.create(WHO)
    clock.advance(TOUCH_S)
    assert await sessions.get(a.id) is not None  # a used last: b is unused longest
    clock.advance(TOUCH_S)
    c = await sessions.create(WHO)  # WHO's third: b goes
    assert await sessions.get(b.id) is None
    assert await sessions.get(a.id) is not None and await sessions.get(c.id) is not None
    clock.advance(TOUCH_S)
    d = await sessions.create(OTHER)
    assert await sessions.count() == 3
    clock.advance(TOUCH_S)
    assert await sessions.get(c.id) is not None  # now a is unused longest of all
    clock.advance(TOUCH_S)
    await sessions.create(OTHER)  # the table's fourth: a goes
    assert await sessions.count() == 3
    assert await sessions.get(a.id) is None
    assert await sessions.get(c.id) is not None and await sessions.get(d.id) is not None


async def test_expired_rows_are_purged_at_login(store: ConsoleStore) -> None:
    clock = SteppedClock(T0)
    sessions = table(store, clock, most=100)
    for _ in range(10):
        await sessions.create(WHO)
    clock.advance(61)  # all idle past the timeout, none looked at again
    await sessions.create(OTHER)
    assert await sessions.count() == 1


async def test_the_cookie_value_is_not_at_rest(database_url: str, store: ConsoleStore) -> None:
    sessions = table(store, SteppedClock(T0))
    s = await sessions.create(WHO, "en")
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT * FROM console_sessions")
    finally:
        await conn.close()
    assert len(rows) == 1
    (row,) = rows
    assert bytes(row["digest"]) == digest(s.id) and len(row["digest"]) == 32
    at_rest = repr([dict(r) for r in rows])
    assert s.id not in at_rest and s.id.encode() not in bytes(row["digest"])
    assert (row["identity"], row["identity_index"], row["lang"]) == (WHO.handle, 300, "en")


async def test_two_tables_on_one_registry_share_sessions(store: ConsoleStore) -> None:
    """Two workers' session tables: a login in one is known to the other, a logout in
    one ends it for both, and a language chosen in one is kept in the other."""
    clock = SteppedClock(T0)
    one, two = table(store, clock), table(store, clock)
    s = await one.create(WHO)
    seen = await two.get(s.id)
    assert seen is not None and seen.identity == WHO and seen.csrf == s.csrf
    await two.set_lang(seen, "en")
    again = await one.get(s.id)
    assert again is not None and again.lang == "en"
    await two.delete(s.id)
    assert await one.get(s.id) is None and await two.get(s.id) is None


async def test_an_import_heartbeat_moves_a_running_row_only(store: ConsoleStore) -> None:
    """What importjob's heartbeat writes: a running import's row says its worker lives;
    a finished one is left as it ended."""
    started = datetime.fromtimestamp(T0, UTC)
    later = started + timedelta(seconds=30)
    for job in ("console-beat-running", "console-beat-done"):
        await store.start_import(
            job, actor=WHO.actor, source="console:x.csv", template="T", total_rows=1, now=started
        )
    await store.pool.execute(
        "UPDATE imports SET state = 'done' WHERE job = $1", "console-beat-done"
    )
    for job in ("console-beat-running", "console-beat-done"):
        await store.touch_import(job, later)
    running = await store.get_import("console-beat-running")
    done = await store.get_import("console-beat-done")
    assert running is not None and running.updated_at == later
    assert done is not None and done.updated_at == started
