"""``idnode import`` and ``idnode export`` as an operator runs them: a real subprocess
killed with -9 in the middle of an import, run again to completion (every row exactly
once), and an export that imports again as the same records."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import os
import signal
import subprocess
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from node.templates.shipped import ROLL
from registry.migrate import migrate
from registry.store import Registry
from tests.node.bulk_support import HEADER, prepare_registry, roll_row, rolls, write_csv
from tests.node.process_support import IDNODE, REPO, idnode_env, run_idnode

ROWS = 30_000
CHUNK = 1_000
NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
BAD = {1234: "widthCm", 20_000: "grade"}  # data rows with a bad value


@pytest.fixture
async def env(database_url: str, tmp_path: Path) -> AsyncIterator[dict[str, str]]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    assert pool is not None
    try:
        async with pool.acquire() as conn:
            await migrate(conn)
        await prepare_registry(Registry(pool), NOW)
    finally:
        await pool.close()
    yield {
        "IDNODE_DATABASE_URL": database_url,
        "IDNODE_DATA_DIR": str(tmp_path / "data"),
        "IDNODE_IMPORT_CHUNK_ROWS": str(CHUNK),
    }


def input_rows() -> list[list[str]]:
    rows = list(rolls(ROWS))
    rows[1234][HEADER.index("widthCm")] = "wide"
    rows[20_000][HEADER.index("grade")] = "特等品"
    return rows


async def wait_for_chunks(url: str, proc: asyncio.subprocess.Process, lines: int) -> int:
    """Wait (on the registry's change notifications, not a timer) until the import has
    committed through ``lines``; the line it has committed through."""
    conn = await asyncpg.connect(url)
    changed = asyncio.Event()
    await conn.add_listener("idnode_handles", lambda *_: changed.set())
    try:
        async with asyncio.timeout(120):
            while True:
                done = await conn.fetchval("SELECT max(through_line) FROM imports") or 0
                if done >= lines:
                    return int(done)
                assert proc.returncode is None, "the import ended before it could be killed"
                changed.clear()
                await changed.wait()
    finally:
        await conn.close()


def group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if int(stat[2]) == pgid and stat[0] != "Z":
                members.append(int(entry.name))
    return members


async def group_gone(pgid: int) -> None:
    async with asyncio.timeout(20):
        while group_members(pgid):
            await asyncio.sleep(0.05)  # polling /proc: the kernel sends no event for it


async def query(url: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


async def test_killed_import_resumes_with_every_row_once(
    env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    data = write_csv(tmp_path / "rolls.csv", input_rows())
    rejects = tmp_path / "rejects.ndjson"
    args = ["import", str(data), "--template", ROLL.handle, "--rejects", str(rejects)]
    proc = await asyncio.create_subprocess_exec(
        *IDNODE,
        *args,
        env=idnode_env(env),
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its worker processes too, to clean up after the kill
    )
    try:
        committed = await wait_for_chunks(database_url, proc, 2 * CHUNK + 1)
        proc.kill()  # SIGKILL: no cleanup, mid-chunk or between chunks
        await proc.wait()
        await group_gone(proc.pid)  # the worker processes end with it
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # its orphaned workers, if still there
    (job,) = await query(database_url, "SELECT through_line, loaded, state FROM imports")
    assert job["state"] == "running" and committed <= job["through_line"] < ROWS + 1
    assert job["through_line"] % CHUNK == 1  # whole chunks only: the header + n * CHUNK

    result = await asyncio.to_thread(run_idnode, *args, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["resumed"] is True and summary["resumedAfterLine"] == job["through_line"]
    assert (summary["loaded"], summary["rejected"], summary["existing"]) == (ROWS - 2, 2, 0)
    assert summary["state"] == "done" and summary["throughLine"] == ROWS + 1
    assert summary["thisRun"]["rows"] == ROWS + 1 - job["through_line"]
    assert "import: " in result.stderr  # the plain progress line (stderr is no terminal)

    counts = await query(
        database_url,
        "SELECT (SELECT count(*) FROM handles WHERE prefix_key = '88.118.2') AS handles,"
        " (SELECT count(*) FROM handle_history WHERE action = 'create') AS created,"
        " (SELECT count(DISTINCT handle_key) FROM handle_history) AS distinct_keys,"
        " (SELECT count(*) FROM handle_fields) AS fields",
    )
    assert dict(counts[0]) == {
        "handles": ROWS - 2,
        "created": ROWS - 2 + 1,  # + the template record
        "distinct_keys": ROWS - 2 + 1,
        "fields": 3 * (ROWS - 2),
    }
    reported = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert [(r["line"], r["handle"]) for r in reported] == [
        (n + 2, roll_row(n)[0]) for n in sorted(BAD)
    ]
    assert [r["problems"][0]["field"] for r in reported] == [BAD[n] for n in sorted(BAD)]


async def test_export_round_trips_through_import(
    env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    rows = list(rolls(1500))
    data = write_csv(tmp_path / "rolls.csv", rows)
    first = run_idnode("import", str(data), "--template", ROLL.handle, env=env, timeout=300)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["loaded"] == 1500

    exported = run_idnode(
        "export", "88.118.2", "--format", "csv", "--template", ROLL.handle, env=env
    )
    assert exported.returncode == 0, exported.stderr
    assert list(csv.reader(io.StringIO(exported.stdout))) == [HEADER, *sorted(rows)]

    whole = run_idnode("export", "88.118.2", env=env)
    assert whole.returncode == 0, whole.stderr
    records = [json.loads(line) for line in whole.stdout.splitlines()]
    assert len(records) == 1500 and all(
        "HS_SIGNATURE" not in line for line in whole.stdout.splitlines()
    )
    (tmp_path / "export.ndjson").write_text(whole.stdout)
    again = run_idnode("import", str(tmp_path / "export.ndjson"), env=env, timeout=300)
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert (summary["loaded"], summary["existing"], summary["rejected"]) == (0, 1500, 0)

    by_fields = run_idnode("export", "88.118.2", "--template", ROLL.handle, env=env)
    line = json.loads(by_fields.stdout.splitlines()[0])
    assert line["template"] == ROLL.handle and line["fields"]["rollNumber"] == "P20260000000"
    assert "values" not in line  # a roll holds its template fields only


def test_operator_mistakes_are_one_line(env: dict[str, str], tmp_path: Path) -> None:
    data = write_csv(tmp_path / "rolls.csv", rolls(3))
    for args, message in (
        (["import", str(data)], "a CSV import needs --template"),
        (["import", str(tmp_path / "nope.csv"), "--template", ROLL.handle], "no such file"),
        (["import", str(data), "--template", "88.118/TPL.NOPE.V1"], "no such template"),
        (["export", "88.118.2", "--format", "csv"], "a CSV export needs --template"),
    ):
        result = (
            run_idnode(*args, "--processes", "0", env=env)
            if args[0] == "import"
            else run_idnode(*args, env=env)
        )
        assert result.returncode != 0
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], result.stderr
