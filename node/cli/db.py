"""``idnode db backup``, ``idnode db restore`` and ``idnode db shell``: the registry
database with PostgreSQL's own tools (registry.backup), on the node's own connection
settings (the embedded server's socket, or ``database_url``).

Exit statuses follow sysexits(3), so a backup script can tell a retry from a fix:
65 not a backup, 66 no such backup file, 69 pg_dump/pg_restore/psql missing or too old,
73 cannot write the backup file, 75 the database is down (try again later), 1 anything
else (a restore refused, a failed pg_dump).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from node.cli.common import AddCommand
from node.errors import EXIT_ERROR, NodeError
from node.runtime.database import Database, cli_database
from node.settings import Settings
from registry import backup
from registry.connect import open_registry
from registry.datadir import NodeLock
from registry.driver import describe_target
from registry.embedded import EmbeddedPostgres
from registry.errors import (
    DatabaseUnavailable,
    DataDirLocked,
    EmbeddedServerError,
    RegistryError,
)
from registry.outage import driver_error, unreachable

EXIT_NOT_A_BACKUP = 65  # EX_DATAERR
EXIT_NO_FILE = 66  # EX_NOINPUT
EXIT_NO_TOOL = 69  # EX_UNAVAILABLE
EXIT_CANNOT_WRITE = 73  # EX_CANTCREAT
EXIT_DATABASE_DOWN = 75  # EX_TEMPFAIL

_EXIT_CODES: tuple[tuple[type[RegistryError], int], ...] = (
    (backup.NotABackup, EXIT_NOT_A_BACKUP),
    (backup.BackupFileMissing, EXIT_NO_FILE),
    (backup.ToolMissing, EXIT_NO_TOOL),
    (backup.CannotWrite, EXIT_CANNOT_WRITE),
    (DatabaseUnavailable, EXIT_DATABASE_DOWN),
    (EmbeddedServerError, EXIT_DATABASE_DOWN),
)
KEYS_NOTE = (
    "not in the backup, by design: the signing keys, the secrets key and the site key "
    "({data_dir}/keys, keys.passphrase, site_key.pem); copy them separately, or records "
    "restored elsewhere verify but their sealed HS_SECKEY secrets cannot be opened"
)


class DbCommandError(NodeError):
    """A ``db`` command failed; ``exit_status`` says how (module docstring)."""

    def __init__(self, message: str, exit_status: int = EXIT_ERROR):
        super().__init__(message)
        self.exit_status = exit_status


def exit_code_for(exc: RegistryError) -> int:
    for cls, code in _EXIT_CODES:
        if isinstance(exc, cls):
            return code
    return EXIT_ERROR


def _target(settings: Settings) -> str:
    return describe_target(_dsn(settings))


def _dsn(settings: Settings) -> str:
    if settings.embedded:
        return _embedded(settings).dsn
    assert settings.database_url is not None
    return settings.database_url


def _embedded(settings: Settings) -> EmbeddedPostgres:
    return EmbeddedPostgres(
        settings.data_dir, run_as=settings.embedded_user, bin_dir=settings.postgres_bin_dir
    )


def _translated(
    fn: Callable[[Settings, argparse.Namespace], Awaitable[int]],
) -> Callable[[Settings, argparse.Namespace], Awaitable[int]]:
    """Registry errors leave the command as one line with the exit status they map to."""

    async def wrapper(settings: Settings, args: argparse.Namespace) -> int:
        try:
            return await fn(settings, args)
        except DatabaseUnavailable as exc:
            message = unreachable(_target(settings), exc) if driver_error(exc) else exc.message
            raise DbCommandError(message, EXIT_DATABASE_DOWN) from None
        except RegistryError as exc:
            raise DbCommandError(exc.message, exit_code_for(exc)) from None

    return wrapper


@asynccontextmanager
async def _database(settings: Settings) -> AsyncIterator[Database]:
    # Neither command migrates before it acts: a backup takes the schema as it is, and a
    # restore brings the restored schema up to date itself.
    async with cli_database(settings, apply_migrations=False) as db:
        yield db


def _preferred_dirs(settings: Settings, db: Database | None) -> list[Path]:
    """The embedded server's own programs match it exactly; else postgres_bin_dir."""
    if db is not None and db.embedded is not None:
        return [db.embedded.bin_dir]
    if settings.embedded:
        return [_embedded(settings).bin_dir]
    return [settings.postgres_bin_dir] if settings.postgres_bin_dir is not None else []


# -- backup ------------------------------------------------------------------------------


@_translated
async def cmd_db_backup(settings: Settings, args: argparse.Namespace) -> int:
    file = Path(args.file)
    backup.check_destination(file)
    async with _database(settings) as db:
        major = await backup.server_major(db.registry)
        tool = backup.find_tool("pg_dump", at_least=major, prefer=_preferred_dirs(settings, db))
        versions = await db.registry.schema_versions()
        size = await asyncio.to_thread(backup.dump, tool, db.dsn, file)
    schema = f"schema version {max(versions)}" if versions else "no idnode schema"
    print(f"backup of {db.registry.target} written to {file} ({size} bytes, {schema})")
    sys.stderr.write(f"idnode: {KEYS_NOTE.format(data_dir=settings.data_dir)}\n")
    return 0


# -- restore -----------------------------------------------------------------------------


@_translated
async def cmd_db_restore(settings: Settings, args: argparse.Namespace) -> int:
    file = Path(args.file)
    backup.check_archive(file)  # before anything starts: a typo costs nothing
    # A node serving this data dir would go on answering from the registry it had in its
    # cache: the embedded database is restored only with no node running on it.
    lock = NodeLock(settings.data_dir) if settings.embedded else None
    if lock is not None:
        try:
            lock.acquire()
        except DataDirLocked as exc:
            raise DbCommandError(
                f"{exc.message}: stop it before restoring its database", EXIT_ERROR
            ) from None
    try:
        async with _database(settings) as db:
            try:
                summary = await _restore(settings, db, file, force=args.force)
            finally:
                if lock is not None:
                    # Released before cli_database ends: it stops the server it started
                    # only if it can take this lock.
                    lock.release()
    finally:
        if lock is not None:
            lock.release()
    print(summary)
    if not settings.embedded:
        sys.stderr.write(
            "idnode: restart the nodes serving this database: their caches still hold "
            "the records from before the restore\n"
        )
    return 0


async def _restore(settings: Settings, db: Database, file: Path, *, force: bool) -> str:
    target = db.registry.target
    major = await backup.server_major(db.registry)
    tool = backup.find_tool("pg_restore", at_least=major, prefer=_preferred_dirs(settings, db))
    in_backup = await asyncio.to_thread(backup.archive_schema_versions, tool, file)
    in_target = await db.registry.schema_versions()
    if in_target:
        found = await backup.contents(db.registry)
        if not found.empty and not force:
            raise backup.RestoreRefused(
                f"the registry at {target} is not empty ({found}): restoring {file} would "
                f"replace all of it; pass --force to do so"
            )
        if in_backup and max(in_target) > max(in_backup):
            raise backup.RestoreRefused(
                f"the registry at {target} has schema version {max(in_target)}, newer than "
                f"the backup's {max(in_backup)}: restore into an empty database instead "
                f"(drop and recreate it; embedded: stop the node and move {settings.data_dir}/pg "
                f"aside, the next start creates an empty one)"
            )
    await asyncio.to_thread(backup.restore, tool, db.dsn, file, clean=bool(in_target))
    # A fresh pool: the old one's prepared statements name the tables just replaced.
    fresh = await open_registry(db.dsn, min_size=1, max_size=1, timeout_s=settings.db_timeout_s)
    try:
        applied = await fresh.migrate()
        versions = await fresh.schema_versions()
        now_holds = await backup.contents(fresh)
    finally:
        await fresh.close()
    lines = [f"applied {m.version:04d}_{m.name}" for m in applied]
    lines.append(f"restored {file} into {target}: {now_holds}; schema at version {max(versions)}")
    return "\n".join(lines)


# -- shell -------------------------------------------------------------------------------


@_translated
async def cmd_db_shell(settings: Settings, args: argparse.Namespace) -> int:
    running = not settings.embedded or await asyncio.to_thread(_embedded(settings).is_running)
    if running:
        # Nothing of ours to clean up afterwards: psql takes over this process.
        tool = backup.find_tool("psql", prefer=_preferred_dirs(settings, None))
        argv, env = backup.shell_command(tool, _dsn(settings))
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(argv[0], argv, env)
    # The embedded server is not running: start it for the session, stop it after.
    async with _database(settings) as db:
        tool = backup.find_tool("psql", prefer=_preferred_dirs(settings, db))
        argv, env = backup.shell_command(tool, db.dsn)
        return await _run_interactive(argv, env)


async def _run_interactive(argv: list[str], env: dict[str, str]) -> int:
    """psql as a child on our terminal. ^C reaches the whole foreground process group:
    psql uses it to cancel a query, so here it must do nothing (a handler, not SIG_IGN,
    which psql would inherit)."""
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, lambda: None)
    try:
        proc = await asyncio.create_subprocess_exec(*argv, env=env)
        return await proc.wait()
    finally:
        loop.remove_signal_handler(signal.SIGINT)


def add_commands(db: Any, command: AddCommand) -> None:
    """The backup commands in the ``db`` group (``db`` is the parsers of that group)."""
    p = command(
        "backup",
        cmd_db_backup,
        "write the registry database to FILE (pg_dump custom format; consistent while nodes serve)",
        db,
    )
    p.add_argument("file", metavar="FILE", help="backup file to write (mode 0600)")
    p = command(
        "restore",
        cmd_db_restore,
        "load a backup made by idnode db backup, then apply newer migrations",
        db,
    )
    p.add_argument("file", metavar="FILE", help="backup file made by idnode db backup")
    p.add_argument(
        "--force",
        action="store_true",
        help="replace a registry that is not empty (its handles, enterprises and prefixes)",
    )
    command("shell", cmd_db_shell, "open psql on the registry database", db)
