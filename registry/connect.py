"""Opening the registry: a connection pool to a PostgreSQL URL, migrations applied."""

from __future__ import annotations

from registry.driver import DRIVER_ERRORS, describe_target, quiet_driver_logs, translate
from registry.instrument import InstrumentedPool, TimedConnection
from registry.store import Registry


class RegistryConnection(TimedConnection):
    """Pool connections without the per-release reset query.

    asyncpg's pool runs ``RESET ALL; UNLISTEN *; ...`` each time a connection goes back,
    a second round trip for every one-query resolution. Registry code keeps no session
    state on pooled connections (transaction-scoped advisory locks only; LISTEN gets a
    dedicated connection, ``registry.notify``), so there is nothing to reset; an open
    transaction is still rolled back by the pool. Its queries are timed by name
    (``registry.instrument``).
    """

    def get_reset_query(self) -> str:
        return ""


async def open_registry(dsn: str, *, min_size: int, max_size: int, timeout_s: float) -> Registry:
    """A registry on a new pool (``InstrumentedPool``: acquires and named queries timed);
    DatabaseUnavailable when the server cannot be reached. The caller closes it
    (``Registry.close``)."""
    target = describe_target(dsn)
    quiet_driver_logs()
    try:
        pool = await InstrumentedPool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            command_timeout=timeout_s,
            timeout=timeout_s,
            connection_class=RegistryConnection,
        )
    except DRIVER_ERRORS as exc:
        raise translate(exc, target) from None
    assert pool is not None
    return Registry(pool, target=target)
