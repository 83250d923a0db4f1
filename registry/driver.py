"""The registry's boundary with the driver: asyncpg's errors become registry errors
here, so nothing above ``registry/`` imports asyncpg or classifies its exceptions.

"Unavailable" is every failure a retry may cure: no server, a server starting up or
shutting down, too many connections, a lost or closed connection, a query past its
deadline. Each becomes ``DatabaseUnavailable`` naming where the registry was sought
(``registry unreachable at socket /var/lib/idnode/run/.s.PGSQL.5432: ...``); any other
PostgreSQL error ``QueryFailed`` with its SQLSTATE.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, Protocol, TypeAlias, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from registry.errors import DatabaseUnavailable, QueryFailed, RegistryError

UNAVAILABLE: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.OperatorInterventionError,  # admin or crash shutdown
    asyncpg.InterfaceError,  # connection or pool closed
    # A pooled connection the server has just dropped, handed out before the pool
    # noticed ("cannot switch to state 12; another operation is in progress").
    asyncpg.InternalClientError,
    asyncpg.QueryCanceledError,  # statement timeout
    OSError,
    TimeoutError,
)

# Everything the driver raises that a method translates.
DRIVER_ERRORS: tuple[type[BaseException], ...] = (*UNAVAILABLE, asyncpg.PostgresError)

# A connection, from the pool or on its own.
Conn: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any]"

P = ParamSpec("P")
T = TypeVar("T")


class HasTarget(Protocol):
    target: str


S = TypeVar("S", bound=HasTarget)


def describe_target(dsn: str) -> str:
    """Where a DSN points, without its password: ``socket /run/.s.PGSQL.5432`` or
    ``db.example:5432/idnode``."""
    parts = urlsplit(dsn)
    query = parse_qs(parts.query)
    database = unquote(parts.path.lstrip("/")) or "(default database)"
    host = query.get("host", [parts.hostname or ""])[0]
    port = query.get("port", [str(parts.port or 5432)])[0]
    if host.startswith("/"):
        return f"socket {host.rstrip('/')}/.s.PGSQL.{port} (database {database})"
    return f"{host or 'localhost'}:{port}/{database}"


def reason(exc: BaseException) -> str:
    text = str(exc).strip() or getattr(exc, "strerror", None) or ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _OneLine(logging.Filter):
    """The driver's pool logs each failed reconnection with a traceback. An outage is
    not a bug: keep its line, with the error's name and text instead of the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            record.msg = f"{record.getMessage()}: {reason(record.exc_info[1])}"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


_ONE_LINE = _OneLine()


def quiet_driver_logs() -> None:
    """Install the one-line filter on the driver's loggers (idempotent)."""
    for name in ("asyncpg", "asyncpg.pool"):
        logger = logging.getLogger(name)
        if _ONE_LINE not in logger.filters:
            logger.addFilter(_ONE_LINE)


def translate(exc: BaseException, target: str) -> RegistryError:
    """The registry error for a driver failure talking to ``target``."""
    if isinstance(exc, RegistryError):
        return exc
    if isinstance(exc, UNAVAILABLE):
        return DatabaseUnavailable(f"registry unreachable at {target}: {reason(exc)}")
    if isinstance(exc, asyncpg.PostgresError):
        return QueryFailed(f"registry query failed (SQLSTATE {exc.sqlstate}): {reason(exc)}")
    raise exc


def translated(
    fn: Callable[Concatenate[S, P], Awaitable[T]],
) -> Callable[Concatenate[S, P], Coroutine[Any, Any, T]]:
    """Decorate a method of an object with a ``target``: driver errors leave it as
    registry errors."""

    async def wrapper(self: S, /, *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await fn(self, *args, **kwargs)
        except RegistryError:
            raise
        except DRIVER_ERRORS as exc:
            raise translate(exc, self.target) from exc

    functools.update_wrapper(wrapper, fn)
    return wrapper
