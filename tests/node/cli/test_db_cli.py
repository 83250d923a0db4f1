"""``idnode db backup``, ``idnode db restore`` and ``idnode db shell``, run as the real
command against the real PostgreSQL: a backup taken while a node serves, the registry
wiped, the backup restored, the records identical (values and versions) and their
signatures still verifying; a restore that would destroy data refused; an older backup
brought up to date; each failure an operator can meet named, with its exit status."""

from __future__ import annotations

import asyncio
import socket
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import asyncpg
import pytest

from node.cli.db import (
    EXIT_CANNOT_WRITE,
    EXIT_DATABASE_DOWN,
    EXIT_NO_FILE,
    EXIT_NOT_A_BACKUP,
)
from protocol.creditcode import check_character
from registry.embedded import EmbeddedPostgres
from registry.migrate import available_migrations
from tests.node.process_support import NodeProcess, run_idnode

FREE = ["--admin-port", "0", "--handle-port", "0", "--http-port", "0"]
SIGNED = ("88.118.2/ROLL-2026-000123", "88.119.2/311003217202400158")  # demo records
WEAVER = "91320509MA1WEAK00" + check_character("91320509MA1WEAK00")


async def idnode(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(run_idnode, *args, input=input, timeout=180)


async def snapshot(dsn: str) -> dict[str, Any]:
    """Everything a restore must bring back as it was."""
    conn = await asyncpg.connect(dsn)
    try:
        return {
            "handles": [
                tuple(r)
                for r in await conn.fetch(
                    'SELECT handle_key, handle, "values", version, created_at, updated_at '
                    "FROM handles ORDER BY handle_key"
                )
            ],
            "history": await conn.fetchval("SELECT count(*) FROM handle_history"),
            "enterprises": [
                tuple(r)
                for r in await conn.fetch(
                    "SELECT credit_code, name, status FROM enterprises ORDER BY credit_code"
                )
            ],
            "prefixes": [
                tuple(r)
                for r in await conn.fetch(
                    "SELECT prefix_key, status FROM prefixes ORDER BY prefix_key"
                )
            ],
            "schema": [
                r["version"]
                for r in await conn.fetch("SELECT version FROM schema_migrations ORDER BY 1")
            ],
        }
    finally:
        await conn.close()


async def recreate(pg_server: str, database_url: str) -> None:
    """The wipe: drop the registry's database and create it again, empty."""
    name = unquote(urlsplit(database_url).path.lstrip("/"))
    conn = await asyncpg.connect(pg_server)
    try:
        await conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def http_port(node: NodeProcess) -> int:
    for line in node.lines:
        if " ready: " in line:
            return int(line.rsplit(" http=", 1)[1].split()[0])
    raise AssertionError(node.output)


# Two node starts and five commands: more than the default per-test bound on a busy box.
@pytest.mark.timeout(300)
async def test_backup_while_serving_wipe_restore_and_verify(
    idnode_data_dir: Path, tmp_path: Path
) -> None:
    data = str(idnode_data_dir)
    file = tmp_path / "registry.dump"
    pg = EmbeddedPostgres(idnode_data_dir)
    node = await asyncio.to_thread(NodeProcess(["--data-dir", data, *FREE, "--demo"]).start)
    try:
        made = await idnode("--data-dir", data, "db", "backup", str(file))
        assert made.returncode == 0, made.stderr
        assert f"written to {file}" in made.stdout
        assert "keys" in made.stderr  # what the backup leaves out, said once
        before = await snapshot(pg.dsn)
        assert len(before["handles"]) > 10

        # A node serves this data dir: its database is not restored under it.
        refused = await idnode("--data-dir", data, "db", "restore", str(file), "--force")
        assert refused.returncode == 1
        assert "stop it before restoring" in refused.stderr
    finally:
        await asyncio.to_thread(node.stop)

    # The wipe of an embedded registry: the cluster moved aside (the keys stay).
    (idnode_data_dir / "pg").rename(idnode_data_dir / "pg.wiped")
    restored = await idnode("--data-dir", data, "db", "restore", str(file))
    assert restored.returncode == 0, restored.stderr
    assert "restored" in restored.stdout and "handles" in restored.stdout
    assert not await asyncio.to_thread(pg.is_running)  # started for the command only

    node = await asyncio.to_thread(NodeProcess(["--data-dir", data, *FREE]).start)
    try:
        assert await snapshot(pg.dsn) == before
        for handle in SIGNED:
            verified = await idnode(
                "verify",
                handle,
                "--via",
                "http",
                "--server",
                f"127.0.0.1:{http_port(node)}",
                "--data-dir",
                data,
            )
            assert verified.returncode == 0, verified.stdout + verified.stderr
            assert "VALID" in verified.stdout
    finally:
        await asyncio.to_thread(node.stop)


async def old_registry(database_url: str) -> str:
    """A registry one migration behind, holding one enterprise; the last migration's
    name."""
    *older, last = available_migrations()
    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction():
            # registry.migrate's bookkeeping table, as a node of that version made it.
            await conn.execute(
                "CREATE TABLE schema_migrations (version integer PRIMARY KEY, "
                "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            for mig in older:
                await conn.execute(mig.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    mig.version,
                    mig.name,
                )
            await conn.execute(
                "INSERT INTO enterprises (name, credit_code, created_at, updated_at) "
                "VALUES ('吴江示例织造有限公司', $1, now(), now())",
                WEAVER,
            )
    finally:
        await conn.close()
    return f"{last.version:04d}_{last.name}"


async def test_restore_refuses_to_overwrite_and_brings_an_old_backup_up_to_date(
    database_url: str, pg_server: str, tmp_path: Path
) -> None:
    url = ["--database-url", database_url, "--data-dir", str(tmp_path / "node")]
    last = await old_registry(database_url)
    latest = available_migrations()[-1].version
    old = tmp_path / "old.dump"
    made = await idnode(*url, "db", "backup", str(old))
    assert made.returncode == 0, made.stderr
    assert f"schema version {latest - 1}" in made.stdout

    refused = await idnode(*url, "db", "restore", str(old))
    assert refused.returncode == 1
    assert "is not empty (0 handles, 1 enterprises, 0 prefixes)" in refused.stderr
    assert "pass --force" in refused.stderr

    await recreate(pg_server, database_url)
    restored = await idnode(*url, "db", "restore", str(old))
    assert restored.returncode == 0, restored.stderr
    assert f"applied {last}" in restored.stdout
    assert f"0 handles, 1 enterprises, 0 prefixes; schema at version {latest}" in restored.stdout
    after = await snapshot(database_url)
    assert after["enterprises"] == [(WEAVER, "吴江示例织造有限公司", 1)]
    assert after["schema"] == [m.version for m in available_migrations()]

    # --clean cannot remove what a newer schema added: an older backup is refused here.
    refused = await idnode(*url, "db", "restore", str(old), "--force")
    assert refused.returncode == 1
    assert f"newer than the backup's {latest - 1}" in refused.stderr

    current = tmp_path / "current.dump"
    assert (await idnode(*url, "db", "backup", str(current))).returncode == 0
    forced = await idnode(*url, "db", "restore", str(current), "--force")
    assert forced.returncode == 0, forced.stderr
    assert await snapshot(database_url) == after

    shell = await idnode(*url, "db", "shell", input="SELECT credit_code FROM enterprises;\n")
    assert shell.returncode == 0, shell.stderr
    assert WEAVER in shell.stdout


async def test_db_shell_starts_and_stops_an_embedded_server(idnode_data_dir: Path) -> None:
    shell = await idnode(
        "--data-dir", str(idnode_data_dir), "db", "shell", input="SELECT 40 + 2 AS answer;\n"
    )
    assert shell.returncode == 0, shell.stderr
    assert "42" in shell.stdout
    assert not await asyncio.to_thread(EmbeddedPostgres(idnode_data_dir).is_running)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_failures_are_named_with_their_exit_status(database_url: str, tmp_path: Path) -> None:
    url = ["--database-url", database_url, "--data-dir", str(tmp_path / "node")]

    missing = await idnode(*url, "db", "restore", str(tmp_path / "none.dump"))
    assert missing.returncode == EXIT_NO_FILE
    assert missing.stderr == f"idnode: error: backup file {tmp_path / 'none.dump'} does not exist\n"

    notes = tmp_path / "notes.txt"
    notes.write_text("a shopping list\n")
    garbage = await idnode(*url, "db", "restore", str(notes))
    assert garbage.returncode == EXIT_NOT_A_BACKUP
    assert "is not a backup made by idnode db backup" in garbage.stderr

    empty = tmp_path / "empty.dump"  # a PostgreSQL backup, but of no registry
    assert (await idnode(*url, "db", "backup", str(empty))).returncode == 0
    foreign = await idnode(*url, "db", "restore", str(empty))
    assert foreign.returncode == EXIT_NOT_A_BACKUP
    assert "not of an idnode registry" in foreign.stderr

    port = _closed_port()
    down = ["--database-url", f"postgresql://idnode@127.0.0.1:{port}/idnode"]
    for command in (["backup", str(tmp_path / "x.dump")], ["restore", str(empty)]):
        failed = await idnode(*down, "--data-dir", str(tmp_path / "node"), "db", *command)
        assert failed.returncode == EXIT_DATABASE_DOWN, failed.stderr
        assert failed.stderr == (
            f"idnode: error: registry unreachable at 127.0.0.1:{port}/idnode: connection refused\n"
        )
    assert not (tmp_path / "x.dump").exists()

    nowhere = await idnode(*url, "db", "backup", str(tmp_path / "no" / "x.dump"))
    assert nowhere.returncode == EXIT_CANNOT_WRITE
    assert "directory" in nowhere.stderr and "does not exist" in nowhere.stderr
