"""registry.backup against the real PostgreSQL programs and server: a dump restored into
another database holds the same rows, byte for byte; bad files and missing programs
are named as such. The command on top (``idnode db backup|restore|shell``) is tested in
tests/node/cli/test_db_cli.py."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import asyncpg
import pytest

from protocol.handle import parse_handle
from protocol.values import HandleValue
from registry import backup
from registry.migrate import applied_versions, available_migrations, migrate
from registry.store import Registry
from tests.conftest import scratch_database
from tests.registry.conftest import T0

ROWS = 'SELECT handle_key, handle, "values", version FROM handles ORDER BY handle_key'


def _tool(name: str) -> backup.Tool:
    return backup.find_tool(name)


async def _rows(url: str) -> list[tuple[object, ...]]:
    conn = await asyncpg.connect(url)
    try:
        return [tuple(r) for r in await conn.fetch(ROWS)]
    finally:
        await conn.close()


async def test_a_dump_restores_into_an_empty_database_row_for_row(
    registry: Registry, database_url: str, pg_server: str, tmp_path: Path
) -> None:
    for n in range(3):
        value = HandleValue(1, "URL", f"https://example.com/{n}".encode())
        await registry.put_handle(parse_handle(f"88.118.2/B-{n}"), [value], actor="t", now=T0)
    major = await backup.server_major(registry)
    dump_tool = backup.find_tool("pg_dump", at_least=major)
    assert dump_tool.major >= major
    file = tmp_path / "registry.dump"

    size = backup.dump(dump_tool, database_url, file)

    assert size == file.stat().st_size > 0
    assert stat.S_IMODE(file.stat().st_mode) == 0o600  # sealed secrets are in it
    assert not list(tmp_path.glob(".*partial"))
    restore_tool = backup.find_tool("pg_restore", at_least=major)
    latest = [m.version for m in available_migrations()]
    assert backup.archive_schema_versions(restore_tool, file) == latest
    async with scratch_database(pg_server) as other:
        backup.restore(restore_tool, other, file, clean=False)
        assert await _rows(other) == await _rows(database_url)
        assert len(await _rows(other)) == 3
        conn = await asyncpg.connect(other)
        try:
            assert await applied_versions(conn) == latest
        finally:
            await conn.close()


async def test_contents_counts_what_a_restore_would_replace(registry: Registry) -> None:
    found = await backup.contents(registry)
    assert (found.handles, found.enterprises, found.prefixes) == (0, 2, 2)
    assert not found.empty and str(found) == "0 handles, 2 enterprises, 2 prefixes"


async def test_a_failed_restore_changes_nothing(
    registry: Registry, database_url: str, pg_server: str, tmp_path: Path
) -> None:
    """One transaction: a restore into a database where the tables exist (no --clean)
    fails on the first of them and leaves the database as it was."""
    file = tmp_path / "r.dump"
    backup.dump(_tool("pg_dump"), database_url, file)
    before = await backup.contents(registry)
    with pytest.raises(backup.BackupError, match="nothing was changed") as caught:
        backup.restore(_tool("pg_restore"), database_url, file, clean=False)
    assert "already exists" in caught.value.message
    assert await backup.contents(registry) == before


async def test_an_older_schema_is_read_from_the_backup(database_url: str, tmp_path: Path) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await migrate(conn)
        await conn.execute("DELETE FROM schema_migrations WHERE version > 3")
    finally:
        await conn.close()
    file = tmp_path / "old.dump"
    backup.dump(_tool("pg_dump"), database_url, file)
    assert backup.archive_schema_versions(_tool("pg_restore"), file) == [1, 2, 3]


def test_files_that_are_not_backups_are_named(tmp_path: Path) -> None:
    with pytest.raises(backup.BackupFileMissing, match="does not exist"):
        backup.check_archive(tmp_path / "missing.dump")
    text = tmp_path / "notes.txt"
    text.write_text("not an archive\n")
    with pytest.raises(backup.NotABackup, match="not a pg_dump custom-format archive"):
        backup.check_archive(text)
    with pytest.raises(backup.NotABackup, match="is a directory"):
        backup.check_archive(tmp_path)
    # The right magic, but cut short: pg_restore's own reason is passed on.
    short = tmp_path / "short.dump"
    short.write_bytes(backup.ARCHIVE_MAGIC + b"\x01")
    with pytest.raises(backup.NotABackup, match="cannot be read by"):
        backup.archive_schema_versions(_tool("pg_restore"), short)


async def test_a_postgres_dump_of_another_database_is_not_a_registry_backup(
    database_url: str, tmp_path: Path
) -> None:
    file = tmp_path / "other.dump"
    backup.dump(_tool("pg_dump"), database_url, file)  # an empty database: no schema
    with pytest.raises(backup.NotABackup, match="not of an idnode registry"):
        backup.archive_schema_versions(_tool("pg_restore"), file)


def test_a_missing_program_is_named_with_how_to_install_it(tmp_path: Path) -> None:
    with pytest.raises(backup.ToolMissing) as caught:
        backup.find_tool("pg_dump", dirs=[tmp_path])
    assert f"pg_dump not found (looked in {tmp_path})" in caught.value.message
    assert "apt-get install postgresql-client" in caught.value.message


def test_a_program_too_old_for_the_server_is_refused() -> None:
    real = backup.find_tool("pg_dump")
    with pytest.raises(backup.ToolMissing) as caught:
        backup.find_tool("pg_dump", at_least=real.major + 1, dirs=[real.path.parent])
    assert f"PostgreSQL {real.major + 1} or newer" in caught.value.message
    assert str(real.path) in caught.value.message


def test_preferred_directories_come_first(tmp_path: Path) -> None:
    real = backup.find_tool("pg_dump")
    assert backup.find_tool("pg_dump", prefer=[tmp_path, real.path.parent]).path == real.path


def test_a_dump_that_fails_leaves_no_file(tmp_path: Path) -> None:
    file = tmp_path / "x.dump"
    file.write_bytes(b"an older backup")
    dead = "postgresql://nobody@127.0.0.1:1/none"
    with pytest.raises(backup.BackupError, match="pg_dump failed"):
        backup.dump(_tool("pg_dump"), dead, file)
    assert file.read_bytes() == b"an older backup"  # the old one stays whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.dump"]


def test_a_destination_that_cannot_be_written_is_named(tmp_path: Path) -> None:
    with pytest.raises(backup.CannotWrite, match="is a directory"):
        backup.check_destination(tmp_path)
    with pytest.raises(backup.CannotWrite, match="does not exist"):
        backup.check_destination(tmp_path / "no" / "x.dump")
    backup.check_destination(tmp_path / "x.dump")


@pytest.mark.parametrize(
    ("dsn", "url", "password"),
    [
        (
            "postgresql://u:s%40cret@db.example:5433/reg",
            "postgresql://u@db.example:5433/reg",
            "s@cret",
        ),
        (
            "postgresql://u@db/reg?password=pw&sslmode=require",
            "postgresql://u@db/reg?sslmode=require",
            "pw",
        ),
        (
            "postgresql://idnode@/idnode?host=/var/lib/idnode/run&port=5432",
            "postgresql://idnode@/idnode?host=/var/lib/idnode/run&port=5432",
            None,
        ),
    ],
)
def test_the_password_goes_in_the_environment_not_on_the_command_line(
    dsn: str, url: str, password: str | None
) -> None:
    clean, env = backup.libpq_connection(dsn)
    assert clean == url
    assert env.get("PGPASSWORD") == (password if password else os.environ.get("PGPASSWORD"))
