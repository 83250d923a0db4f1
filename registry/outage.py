"""Why the registry cannot be reached, in words an operator reads on a probe or a command.

``registry.driver`` names a failure by its exception (``ConnectionRefusedError: [Errno
111] Connection refused``), which is right for a log line a developer reads. A readiness
probe or an operator command says the same thing as ``connection refused``; this module
makes that sentence from the driver's exception, so nothing above ``registry/`` needs to
know the driver's exception classes.
"""

from __future__ import annotations

import errno
import socket

import asyncpg

from registry.errors import RegistryError

# The driver's own failures; PostgreSQL's refusals (57P03 "the database system is starting
# up", 53300 "sorry, too many clients already") already say it in words, and keep them.
_DRIVER_WORDS: tuple[tuple[type[BaseException], str], ...] = (
    (asyncpg.InterfaceError, "the connection was lost"),
    (asyncpg.InternalClientError, "the connection was lost"),
)
_ERRNO_WORDS = {
    errno.ECONNREFUSED: "connection refused",
    # A Unix socket whose file is gone: no server has created it.
    errno.ENOENT: "connection refused (no server socket: PostgreSQL is not running)",
    errno.ECONNRESET: "the connection was lost",
    errno.EPIPE: "the connection was lost",
    errno.EACCES: "permission denied on the server socket",
    errno.ETIMEDOUT: "no answer in time",
    errno.EHOSTUNREACH: "no route to the host",
    errno.ENETUNREACH: "the network is unreachable",
}


def in_words(exc: BaseException) -> str:
    """What went wrong reaching the database, lower case, with no exception class name:
    ``connection refused``, ``the connection was lost``, or PostgreSQL's own message."""
    if isinstance(exc, RegistryError):
        inner = driver_error(exc)
        return in_words(inner) if inner is not None else exc.message
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    for cls, words in _DRIVER_WORDS:
        if isinstance(exc, cls):
            return words
    if isinstance(exc, asyncpg.PostgresError):
        return _lower_first(str(getattr(exc, "message", "") or exc))
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host name ({_lower_first(exc.strerror or str(exc))})"
    if isinstance(exc, OSError):
        if exc.errno in _ERRNO_WORDS:
            return _ERRNO_WORDS[exc.errno]
        if exc.strerror:
            return _lower_first(exc.strerror)
    return _lower_first(str(exc).strip()) or type(exc).__name__


def driver_error(exc: RegistryError) -> BaseException | None:
    """The driver's exception behind a registry error: its cause (``raise ... from exc``)
    or, where it was raised ``from None``, the exception it replaced."""
    return exc.__cause__ or exc.__context__


def unreachable(target: str, exc: BaseException) -> str:
    """``registry unreachable at <target>: <in words>``."""
    return f"registry unreachable at {target}: {in_words(exc)}"


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:] if text[:2] != text[:2].upper() else text
