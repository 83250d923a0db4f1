"""Change notifications: a dedicated connection LISTENing on the channels the
registry's triggers notify after every commit (migrations 0003 and 0004).

``handles``: handle keys that changed; ``prefixes``: prefix keys that changed. Each
payload starts with the sender's clock (unix epoch milliseconds), so a listener can
measure how late it heard. What a listener does with a change is its business
(``node.resolution.cache.listener``); this module only connects, delivers and notices
a lost connection, including one that died without a FIN (a periodic ping).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncpg

from registry.driver import DRIVER_ERRORS, Conn, describe_target, translate

CHANNELS = {"handles": "idnode_handles", "prefixes": "idnode_prefixes"}


@dataclass(frozen=True, slots=True)
class Change:
    kind: str  # "handles" | "prefixes"
    sent_ms: int  # the sender's clock, unix epoch milliseconds
    keys: tuple[str, ...]


class MalformedChange(ValueError):
    """A payload on our channel that our triggers did not write."""


def parse_payload(kind: str, payload: str) -> Change:
    stamp, _, rest = payload.partition("\n")
    try:
        sent_ms = int(stamp)
    except ValueError:
        raise MalformedChange(
            f"payload on {CHANNELS[kind]} does not start with a time stamp"
        ) from None
    return Change(kind, sent_ms, tuple(k for k in rest.split("\n") if k))


class ChangeFeed:
    """One LISTEN connection. ``connect`` raises DatabaseUnavailable; ``lost`` returns
    once the connection is gone; ``close`` ends it."""

    def __init__(self, dsn: str, *, connect_timeout_s: float = 5.0):
        self.dsn = dsn
        self.target = describe_target(dsn)
        self.connect_timeout_s = connect_timeout_s
        self._conn: asyncpg.Connection[Any] | None = None

    async def connect(
        self, deliver: Callable[[Change], None], on_malformed: Callable[[str], None]
    ) -> None:
        def listener(kind: str) -> Callable[[Conn, int, str, object], None]:
            def on_notify(conn: Conn, pid: int, channel: str, payload: object) -> None:
                try:
                    change = parse_payload(kind, str(payload))
                except MalformedChange as exc:
                    on_malformed(str(exc))
                    return
                deliver(change)

            return on_notify

        try:
            conn = await asyncpg.connect(self.dsn, timeout=self.connect_timeout_s)
        except DRIVER_ERRORS as exc:
            raise translate(exc, self.target) from None
        try:
            for kind, channel in CHANNELS.items():
                await conn.add_listener(channel, listener(kind))
        except BaseException as exc:
            conn.terminate()
            if isinstance(exc, DRIVER_ERRORS):
                raise translate(exc, self.target) from None
            raise
        self._conn = conn

    async def lost(self, ping_interval_s: float) -> None:
        """Return when the connection is gone: closed by the server, or not answering."""
        conn = self._conn
        if conn is None:
            return
        gone = asyncio.Event()
        conn.add_termination_listener(lambda _conn: gone.set())
        while not gone.is_set() and not conn.is_closed():
            try:
                await asyncio.wait_for(gone.wait(), ping_interval_s)
                return
            except TimeoutError:
                pass
            try:
                await conn.fetchval("SELECT 1", timeout=ping_interval_s)
            except DRIVER_ERRORS:
                return

    def server_pid(self) -> int | None:
        """The backend serving this connection (an operator, or a test, may end it)."""
        return self._conn.get_server_pid() if self._conn is not None else None

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            conn.terminate()
