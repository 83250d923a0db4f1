"""Bulk loading (registry/bulk.py) against a real PostgreSQL: one chunk, one transaction —
handles, history, field index, refused rows and the job's progress commit together or
not at all; existing handles are compared, never overwritten."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import asyncpg
import pytest

from protocol.handle import normalise, parse_handle
from protocol.templates import Problem
from protocol.valuecodec import decode_values, encode_values
from protocol.values import HandleValue
from registry.bulk import ImportRow, ImportStore, Rejected, same_content
from registry.errors import Conflict, QueryFailed
from registry.rows import FieldRows, PrefixStatus
from registry.store import Registry
from tests.registry.conftest import T0

TEMPLATE = "88.118/TPL.TEST.V1"
TS = int(T0.timestamp())
ACTOR = "cli:importer"


def values(n: int, url: str | None = None) -> tuple[HandleValue, ...]:
    return (
        HandleValue(1, "URL", (url or f"https://example.com/roll/{n}").encode(), timestamp=TS),
        HandleValue(1001, "TEMPLATE", TEMPLATE.encode(), timestamp=TS),
        HandleValue(2000, "rollNumber", f"R{n}".encode(), timestamp=TS),
    )


def row(
    n: int,
    line: int,
    *,
    prefix: str = "88.118.2",
    url: str | None = None,
    unique: tuple[tuple[str, str], ...] = (),
) -> ImportRow:
    handle = f"{prefix}/BULK-{n}"
    return ImportRow(
        line,
        handle,
        normalise(handle),
        normalise(prefix),
        encode_values(values(n, url)),
        normalise(TEMPLATE),
        (("rollNumber", f"R{n}"),),
        unique,
    )


@pytest.fixture
async def store(registry: Registry) -> ImportStore:
    store = ImportStore(registry)
    await store.start_job("job-1", actor=ACTOR, source="test", now=T0)
    return store


async def fetch(pool: asyncpg.Pool, sql: str, *args: object) -> list[asyncpg.Record]:
    return list(await pool.fetch(sql, *args))  # test SQL on the registry's own tables


async def test_a_chunk_commits_handles_history_fields_rejects_and_progress(
    store: ImportStore, pool: asyncpg.Pool, database_url: str
) -> None:
    heard: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(database_url)
    await listener.add_listener("idnode_handles", lambda *a: heard.put_nowait(str(a[-1])))
    try:
        refused = [
            Rejected(
                3,
                "88.118.2/BAD",
                "rollNumber: required, missing",
                (Problem("rollNumber", 2000, "", "required, missing"),),
            )
        ]
        out = await store.load_chunk(
            "job-1", [row(1, 2), row(2, 4), row(3, 5)], 5, T0, ACTOR, refused=refused
        )
        assert (out.loaded, out.existing, out.skipped) == (3, 0, False)
        assert out.rejected == tuple(refused)
        assert (out.job.through_line, out.job.loaded, out.job.rejected) == (5, 3, 1)
        payload = await asyncio.wait_for(heard.get(), 10)
        assert payload.split("\n")[1:] == [normalise(f"88.118.2/BULK-{n}") for n in (1, 2, 3)]
    finally:
        await listener.close()
    stored = await store.pool.fetchrow(
        'SELECT handle, "values", version FROM handles WHERE handle_key = $1',
        normalise("88.118.2/BULK-2"),
    )
    assert stored is not None
    assert (stored["handle"], stored["version"]) == ("88.118.2/BULK-2", 1)
    assert decode_values(stored["values"]) == values(2)
    history = await fetch(pool, "SELECT handle_key, action, actor, version FROM handle_history")
    assert (
        sorted((r["action"], r["actor"], r["version"]) for r in history)
        == [("create", ACTOR, 1)] * 3
    )
    fields = await fetch(pool, "SELECT template_key, field, value FROM handle_fields ORDER BY 3")
    assert [tuple(r) for r in fields] == [
        (normalise(TEMPLATE), "rollNumber", f"R{n}") for n in (1, 2, 3)
    ]
    assert await store.rejects("job-1") == refused


async def test_existing_handles_are_compared_never_overwritten(
    registry: Registry, store: ImportStore, pool: asyncpg.Pool
) -> None:
    later = T0 + timedelta(hours=1)
    # Same content written earlier (other timestamps, and a signature a re-run would
    # not reproduce): existing. Other content: refused, the stored record untouched.
    signature = HandleValue(400, "HS_SIGNATURE", b"a.b.c", timestamp=TS)
    await registry.put_handle(
        parse_handle("88.118.2/BULK-1"), [*values(1), signature], actor="x", now=later
    )
    await registry.put_handle(
        parse_handle("88.118.2/BULK-2"),
        values(2, "https://elsewhere.example/2"),
        actor="x",
        now=later,
    )
    before = await fetch(pool, 'SELECT handle_key, "values", version FROM handles ORDER BY 1')
    out = await store.load_chunk("job-1", [row(1, 1), row(2, 2), row(3, 3)], 3, T0, ACTOR)
    assert (out.loaded, out.existing) == (1, 1)
    assert [(r.line, r.handle) for r in out.rejected] == [(2, "88.118.2/BULK-2")]
    assert "exists with other values" in out.rejected[0].reason
    after = await fetch(pool, 'SELECT handle_key, "values", version FROM handles ORDER BY 1')
    assert [tuple(r) for r in after if r["handle_key"] != normalise("88.118.2/BULK-3")] == [
        tuple(r) for r in before
    ]
    assert await pool.fetchval("SELECT count(*) FROM handle_history") == 3  # 2 puts + 1 create


async def test_repeated_handle_in_a_chunk(store: ImportStore) -> None:
    out = await store.load_chunk(
        "job-1", [row(1, 1), row(1, 2), row(1, 3, url="https://other.example/")], 3, T0, ACTOR
    )
    assert (out.loaded, out.existing) == (1, 1)
    assert [(r.line, r.reason) for r in out.rejected] == [
        (3, "line 1 gave handle 88.118.2/BULK-1 other values; a bulk import does not overwrite")
    ]


async def test_unique_values_have_one_holder(
    registry: Registry, store: ImportStore, pool: asyncpg.Pool
) -> None:
    await registry.put_handle(
        parse_handle("88.118.2/HOLDER"),
        values(0),
        actor="x",
        now=T0,
        fields=FieldRows(unique=((TEMPLATE, "serial", "S-1"),)),
    )
    rows = [
        row(1, 1, unique=(("serial", "S-1"),)),  # held by 88.118.2/HOLDER
        row(2, 2, unique=(("serial", "S-2"),)),
        row(3, 3, unique=(("serial", "S-2"),)),  # claimed by line 2 of this chunk
        row(4, 4, unique=(("serial", "S-4"),)),
    ]
    out = await store.load_chunk("job-1", rows, 4, T0, ACTOR)
    assert out.loaded == 2
    assert [(r.line, r.reason) for r in out.rejected] == [
        (1, "serial 'S-1' is already used by 88.118.2/HOLDER (unique within the prefix)"),
        (3, "serial 'S-2' is already used by 88.118.2/BULK-2 (line 2; unique within the prefix)"),
    ]
    holders = await fetch(pool, "SELECT value, handle_key FROM handle_unique ORDER BY 1")
    assert [tuple(r) for r in holders] == [
        ("S-1", normalise("88.118.2/HOLDER")),
        ("S-2", normalise("88.118.2/BULK-2")),
        ("S-4", normalise("88.118.2/BULK-4")),
    ]
    assert await registry.get_handle(normalise("88.118.2/BULK-1")) is None


async def test_rows_under_unusable_prefixes_are_refused(
    registry: Registry, store: ImportStore
) -> None:
    await registry.set_prefix_status("88.118.5", PrefixStatus.DISABLED, T0)
    rows = [row(1, 1), row(2, 2, prefix="88.118.5"), row(3, 3, prefix="88.118.9")]
    out = await store.load_chunk("job-1", rows, 3, T0, ACTOR)
    assert out.loaded == 1
    assert [(r.line, r.reason) for r in out.rejected] == [
        (2, "prefix 88.118.5 is disabled (status 0), not enabled"),
        (3, "prefix 88.118.9 is not registered on this node"),
    ]


async def test_a_failed_chunk_leaves_nothing_not_even_progress(
    store: ImportStore, pool: asyncpg.Pool
) -> None:
    await store.load_chunk("job-1", [row(1, 1)], 1, T0, ACTOR)
    # A real failure in the middle of the chunk's transaction, after the handles went
    # in: the field index refuses one value.
    await pool.execute(
        """
        CREATE FUNCTION refuse_boom() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.value = 'R3' THEN RAISE EXCEPTION 'boom'; END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER refuse_boom BEFORE INSERT ON handle_fields
            FOR EACH ROW EXECUTE FUNCTION refuse_boom();
        """
    )
    rejected = [Rejected(4, "88.118.2/X", "bad")]
    with pytest.raises(QueryFailed, match="boom"):
        await store.load_chunk("job-1", [row(2, 2), row(3, 3)], 4, T0, ACTOR, refused=rejected)
    keys = await fetch(pool, "SELECT handle_key FROM handles ORDER BY 1")
    assert [r[0] for r in keys] == [normalise("88.118.2/BULK-1")]
    assert await pool.fetchval("SELECT count(*) FROM handle_history") == 1
    assert await pool.fetchval("SELECT count(*) FROM import_rejects") == 0
    job = await store.get_job("job-1")
    assert job is not None and (job.through_line, job.loaded, job.rejected) == (1, 1, 0)

    await pool.execute("DROP TRIGGER refuse_boom ON handle_fields")
    out = await store.load_chunk("job-1", [row(2, 2), row(3, 3)], 4, T0, ACTOR, refused=rejected)
    assert (out.loaded, out.job.through_line, out.job.loaded, out.job.rejected) == (2, 4, 3, 1)


async def test_a_handle_created_while_the_chunk_loads_is_compared_not_doubled(
    store: ImportStore, pool: asyncpg.Pool, database_url: str
) -> None:
    other = await asyncpg.connect(database_url)  # another writer, its insert not committed
    try:
        tx = other.transaction()
        await tx.start()
        taken = row(2, 0, url="https://elsewhere.example/2")
        await other.execute(
            "INSERT INTO handles VALUES ($1, $2, $3, $4, 1, $5, $5)",
            taken.key,
            taken.handle,
            taken.prefix_key,
            taken.wire,
            T0,
        )
        loading = asyncio.create_task(
            store.load_chunk("job-1", [row(1, 1), row(2, 2), row(3, 3)], 3, T0, ACTOR)
        )
        async with asyncio.timeout(30):  # until the chunk's COPY waits for that insert
            while not await pool.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query LIKE 'COPY%'"
            ):
                assert not loading.done(), loading
                await asyncio.sleep(0.02)
        await tx.commit()
        out = await loading
    finally:
        await other.close()
    assert (out.loaded, out.existing) == (2, 0)
    assert [(r.line, "exists with other values" in r.reason) for r in out.rejected] == [(2, True)]
    assert await pool.fetchval("SELECT count(*) FROM handles") == 3
    assert await pool.fetchval("SELECT count(*) FROM handle_history") == 2


async def test_committed_lines_are_never_loaded_twice(
    store: ImportStore, pool: asyncpg.Pool
) -> None:
    rows = [row(n, n) for n in range(1, 11)]
    await store.load_chunk("job-1", rows, 10, T0, ACTOR)
    again = await store.load_chunk("job-1", rows, 10, T0, ACTOR)
    assert again.skipped and again.job.loaded == 10
    # A second run cut in other chunk sizes: only the lines past the committed ones.
    out = await store.load_chunk("job-1", [row(n, n) for n in range(6, 16)], 15, T0, ACTOR)
    assert (out.loaded, out.existing, out.job.through_line, out.job.loaded) == (5, 0, 15, 15)
    assert await pool.fetchval("SELECT count(*) FROM handle_history") == 15


async def test_a_job_is_its_actors_and_finishes(store: ImportStore) -> None:
    with pytest.raises(Conflict, match="another admin"):
        await store.start_job("job-1", actor="300:88.118.3/ADMIN", source="x", now=T0)
    done = await store.finish_job("job-1", T0)
    assert done.state == "done"
    with pytest.raises(Conflict, match="finished"):
        await store.load_chunk("job-1", [row(1, 1)], 1, T0, ACTOR)


def test_same_content_ignores_timestamps_and_signatures() -> None:
    a = encode_values(values(1))
    later = [HandleValue(v.index, v.type, v.data, timestamp=TS + 60) for v in values(1)]
    b = encode_values([*later, HandleValue(400, "HS_SIGNATURE", b"x.y.z")])
    assert same_content(a, b)
    assert not same_content(a, encode_values(values(2)))
