"""Backups of the registry database with PostgreSQL's own tools (``idnode db backup``,
``idnode db restore``, ``idnode db shell``; docs in README "Operations").

A backup is one ``pg_dump --format=custom`` archive of the registry database. pg_dump
reads inside one snapshot, so a backup taken while nodes serve and write is consistent:
every record as of one moment, each with the signature it was stored with. A restore is
one ``pg_restore --single-transaction``: it lands whole or not at all. Objects are
restored as the restoring role's (``--no-owner --no-privileges``), so a backup moves
between the embedded server (role ``idnode``) and an external one (any role).

The programs are taken from the embedded server's own directory (same version as the
cluster), else from PATH, ``/usr/lib/postgresql/*/bin`` or the packaged server, the first
one whose major version is at least the server's: an older pg_dump refuses a newer
server. The connection is the node's own (its ``database_url`` or the embedded socket);
a password in the URL goes to the program in PGPASSWORD, never on its command line.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from registry.embedded import program_dirs
from registry.errors import RegistryError
from registry.queries import q
from registry.store import Registry

# The first bytes of every pg_dump custom-format archive.
ARCHIVE_MAGIC = b"PGDMP"
_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)")
_COPY = re.compile(r"^COPY \S*schema_migrations \(")
_HOW_TO_INSTALL = (
    "install PostgreSQL's client programs (apt-get install postgresql-client), "
    "or set postgres_bin_dir to the directory holding them"
)


class BackupError(RegistryError):
    """A backup or restore could not be made."""


class BackupFileMissing(BackupError):
    """The backup file does not exist or cannot be read."""


class NotABackup(BackupError):
    """The file is not a registry backup made by ``idnode db backup``."""


class ToolMissing(BackupError):
    """pg_dump, pg_restore or psql is not installed, or too old for the server."""


class CannotWrite(BackupError):
    """The backup file cannot be written where it was asked for."""


class RestoreRefused(BackupError):
    """Restoring would destroy data; the message says how to go ahead."""


@dataclass(frozen=True)
class Contents:
    handles: int
    enterprises: int
    prefixes: int

    @property
    def empty(self) -> bool:
        return self.handles == self.enterprises == self.prefixes == 0

    def __str__(self) -> str:
        return f"{self.handles} handles, {self.enterprises} enterprises, {self.prefixes} prefixes"


@dataclass(frozen=True)
class Tool:
    path: Path
    major: int

    def __str__(self) -> str:
        return f"{self.path} (PostgreSQL {self.major})"


# -- the registry side -------------------------------------------------------------------


async def server_major(registry: Registry) -> int:
    """The server's major version (160004 -> 16)."""
    num: int = await registry.pool.fetchval(q("backup_server_version"))
    return num // 10000


async def contents(registry: Registry) -> Contents:
    """What the registry holds; its schema must exist (``Registry.schema_versions``)."""
    row = await registry.pool.fetchrow(q("backup_registry_contents"))
    assert row is not None
    return Contents(row["handles"], row["enterprises"], row["prefixes"])


# -- the programs ------------------------------------------------------------------------


def program_major(path: Path) -> int | None:
    """The major version ``path --version`` reports (``pg_dump (PostgreSQL) 15.14``)."""
    try:
        out = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, timeout=30, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = _VERSION.search(out)
    return int(match.group(1)) if match else None


def find_tool(
    name: str,
    *,
    at_least: int | None = None,
    prefer: Sequence[Path] = (),
    dirs: Sequence[Path] | None = None,
) -> Tool:
    """The first ``name`` of at least major version ``at_least``: in ``prefer``, then on
    PATH and where PostgreSQL's server programs are found (``dirs`` replaces those two)."""
    if dirs is None:
        on_path = shutil.which(name)
        dirs = [Path(on_path).parent] if on_path else []
        dirs += program_dirs()
    seen: list[Tool] = []
    for directory in dict.fromkeys([*prefer, *dirs]):  # in order, once each
        path = directory / name
        if not os.access(path, os.X_OK) or path.is_dir():
            continue
        major = program_major(path)
        if major is None:
            continue
        tool = Tool(path, major)
        if at_least is None or major >= at_least:
            return tool
        seen.append(tool)
    if seen:
        found = ", ".join(str(t) for t in seen)
        raise ToolMissing(
            f"{name} must be of PostgreSQL {at_least} or newer for this server, but only "
            f"older ones were found: {found}; {_HOW_TO_INSTALL}"
        )
    raise ToolMissing(
        f"{name} not found (looked in {', '.join(str(d) for d in dict.fromkeys([*prefer, *dirs])) or 'no directory'}); "
        f"{_HOW_TO_INSTALL}"
    )


def libpq_connection(dsn: str) -> tuple[str, dict[str, str]]:
    """The URL for a libpq program without its password, and the environment that carries
    the password instead (a command line is visible to every user in ``ps``)."""
    parts = urlsplit(dsn)
    env = dict(os.environ)
    password = parts.password
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any(k == "password" for k, _ in query):
        password = next(v for k, v in query if k == "password")
        query = [(k, v) for k, v in query if k != "password"]
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.partition(":")[0]
        netloc = f"{user}@{hostport}"
    if password is not None:
        env["PGPASSWORD"] = unquote(password) if parts.password is not None else password
    # The slashes of a socket directory stay readable: libpq takes them as they are.
    clean = urlunsplit(
        parts._replace(netloc=netloc, query=urlencode(query, safe="/", quote_via=quote))
    )
    return clean, env


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(args, capture_output=True, text=True, env=env, check=False)
    except OSError as exc:
        raise ToolMissing(f"cannot run {args[0]}: {exc.strerror}") from None


def check_destination(file: Path) -> None:
    """Raise CannotWrite unless ``file`` may be created (before connecting anywhere)."""
    if file.is_dir():
        raise CannotWrite(f"{file} is a directory: name the backup file")
    if not file.parent.is_dir():
        raise CannotWrite(f"cannot write {file}: directory {file.parent} does not exist")


def dump(tool: Tool, dsn: str, file: Path) -> int:
    """Write the registry to ``file`` (mode 0600: records hold sealed secrets); the bytes
    written. Atomic: a failed dump leaves no file by that name, an old one stays whole."""
    url, env = libpq_connection(dsn)
    partial = file.with_name(f".{file.name}.partial")
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as exc:
        raise CannotWrite(f"cannot write {file}: {exc.strerror}") from None
    os.close(fd)
    os.chmod(partial, 0o600)  # a leftover partial file may have had another mode
    result = _run(
        [
            str(tool.path),
            "--format=custom",
            "--no-password",
            f"--file={partial}",
            f"--dbname={url}",
        ],
        env,
    )
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        raise BackupError(f"pg_dump failed: {_last_lines(result.stderr)}")
    os.replace(partial, file)
    _fsync_dir(file.parent)
    return file.stat().st_size


def check_archive(file: Path) -> None:
    """Raise unless ``file`` is a readable pg_dump custom-format archive."""
    try:
        with open(file, "rb") as f:
            head = f.read(len(ARCHIVE_MAGIC))
    except FileNotFoundError:
        raise BackupFileMissing(f"backup file {file} does not exist") from None
    except IsADirectoryError:
        raise NotABackup(f"{file} is a directory, not a backup file") from None
    except OSError as exc:
        raise BackupFileMissing(f"cannot read backup file {file}: {exc.strerror}") from None
    if head != ARCHIVE_MAGIC:
        raise NotABackup(
            f"{file} is not a backup made by idnode db backup (not a pg_dump custom-format archive)"
        )


def archive_schema_versions(tool: Tool, file: Path) -> list[int]:
    """The schema migrations recorded in the backup (from its schema_migrations table)."""
    check_archive(file)
    result = _run(
        [str(tool.path), "--data-only", "--table=schema_migrations", "--file=-", str(file)],
        dict(os.environ),
    )
    if result.returncode != 0:
        raise NotABackup(f"{file} cannot be read by {tool}: {_last_lines(result.stderr)}")
    versions: list[int] = []
    rows = False
    for line in result.stdout.splitlines():
        if _COPY.match(line):
            rows = True
        elif rows and line == "\\.":
            break
        elif rows and line.split("\t", 1)[0].isdigit():
            versions.append(int(line.split("\t", 1)[0]))
    if not rows:
        raise NotABackup(
            f"{file} is a PostgreSQL backup, but not of an idnode registry (no schema_migrations)"
        )
    return sorted(versions)


def restore(tool: Tool, dsn: str, file: Path, *, clean: bool) -> None:
    """Load the backup in one transaction; ``clean`` drops the objects it holds first."""
    url, env = libpq_connection(dsn)
    args = [
        str(tool.path),
        "--no-password",
        "--no-owner",
        "--no-privileges",
        "--single-transaction",
        "--exit-on-error",
        f"--dbname={url}",
    ]
    if clean:
        args += ["--clean", "--if-exists"]
    result = _run([*args, str(file)], env)
    if result.returncode != 0:
        raise BackupError(
            f"pg_restore failed, nothing was changed (one transaction): {_last_lines(result.stderr)}"
        )


def shell_command(tool: Tool, dsn: str) -> tuple[list[str], dict[str, str]]:
    """psql's command line and environment for the registry database."""
    url, env = libpq_connection(dsn)
    return [str(tool.path), f"--dbname={url}"], env


def _fsync_dir(directory: Path) -> None:
    # The rename is durable only once the directory entry is on disk.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _last_lines(text: str) -> str:
    """The program's error lines (``pg_restore: error: ...``, PostgreSQL's ``ERROR: ...``),
    without the SQL it echoes; else its last lines."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if "error:" in line.lower()]
    return " | ".join((errors or lines)[-3:]) or "no message"
