"""The idnode data directory: the one-node-per-directory lock, and the OS user the embedded
PostgreSQL runs as when idnode itself runs as root.

Kept apart from `embedded.py` because the lock and the permission checks are plain POSIX
file-system matters that know nothing about PostgreSQL.
"""

from __future__ import annotations

import fcntl
import os
import pwd
import stat
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from registry.errors import DataDirLocked, EmbeddedServerError

LOCK_FILE_NAME = "idnode.lock"


class NodeLock:
    """An exclusive `flock` on `data_dir/idnode.lock`, held for the life of a node process.

    flock (not a pid file) because the kernel drops it when the holder dies, even by
    `kill -9`: a restarted node then takes the lock and adopts the postmaster that outlived
    its predecessor. The pid written into the file is only there for the error message.
    flock is advisory and unreliable on some network file systems; a data dir is local.
    """

    def __init__(self, data_dir: Path) -> None:
        self._data_dir = data_dir
        self._path = data_dir / LOCK_FILE_NAME
        self._fd: int | None = None

    @property
    def path(self) -> Path:
        return self._path

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock or raise DataDirLocked naming the process that holds it."""
        if self._fd is not None:
            return
        self._data_dir.mkdir(parents=True, exist_ok=True)
        # O_CLOEXEC: a child that inherited this descriptor (pg_ctl, then the postmaster it
        # daemonises) would keep the lock alive after we die and block our own restart.
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"pid {holder}" if holder is not None else "pid unknown"
            raise DataDirLocked(
                f"another idnode ({who}) is already serving data dir {self._data_dir}"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        # Truncate first so a reader never sees our pid after we stopped holding the lock.
        os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    # The holder writes its pid just after taking the lock; in that window we read "".
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None


@dataclass(frozen=True)
class OsUser:
    """An unprivileged account that PostgreSQL's programs run as when we are root."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]

    @classmethod
    def lookup(cls, name: str) -> OsUser:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise EmbeddedServerError(f"no OS user named {name!r} to run PostgreSQL as") from None
        if entry.pw_uid == 0:
            raise EmbeddedServerError(
                f"PostgreSQL refuses to run as root, and OS user {name!r} has uid 0; "
                "choose an unprivileged user"
            )
        groups = tuple(os.getgrouplist(name, entry.pw_gid))
        return cls(name=name, uid=entry.pw_uid, gid=entry.pw_gid, groups=groups)

    def subprocess_kwargs(self) -> dict[str, Any]:
        # extra_groups replaces root's supplementary groups instead of letting them leak.
        return {"user": self.uid, "group": self.gid, "extra_groups": list(self.groups)}

    def can_search(self, info: os.stat_result) -> bool:
        """Classic owner/group/other rules for the x bit; ACLs are not consulted."""
        if info.st_uid == self.uid:
            return bool(info.st_mode & stat.S_IXUSR)
        if info.st_gid in self.groups:
            return bool(info.st_mode & stat.S_IXGRP)
        return bool(info.st_mode & stat.S_IXOTH)


def server_user(run_as: str | None) -> OsUser | None:
    """The account to run initdb/pg_ctl as, or None to run them as ourselves.

    PostgreSQL will not run as root, so root picks `run_as`, else `postgres` if that account
    exists (Debian's packages create it), else `nobody`.
    """
    if os.geteuid() != 0:
        current = pwd.getpwuid(os.geteuid()).pw_name
        if run_as is not None and run_as != current:
            raise EmbeddedServerError(
                f"cannot run PostgreSQL as {run_as!r}: only root can switch users "
                f"(idnode runs as {current!r})"
            )
        return None
    if run_as is not None:
        return OsUser.lookup(run_as)
    for name in ("postgres", "nobody"):
        try:
            return OsUser.lookup(name)
        except EmbeddedServerError:
            continue
    raise EmbeddedServerError(
        "running as root, but neither OS user 'postgres' nor 'nobody' exists to run "
        "PostgreSQL as; create one or pass run_as"
    )


def check_searchable(path: Path, user: OsUser) -> None:
    """Raise if `user` cannot reach `path`: every existing directory on the way must grant it x.

    We only report; changing the modes of directories we did not create is the operator's call.
    """
    for directory in [*reversed(path.parents), path]:
        try:
            info = directory.stat()
        except FileNotFoundError:
            return  # we create the rest ourselves, searchable by the server user
        if stat.S_ISDIR(info.st_mode) and not user.can_search(info):
            raise EmbeddedServerError(
                f"{directory} is not searchable by user {user.name!r}, so PostgreSQL cannot "
                f"reach {path}; choose a data dir such as /var/lib/idnode, "
                f"or run: chmod o+x {directory}"
            )


def owner_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"
