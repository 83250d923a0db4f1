"""A fault-injecting TCP proxy in front of the test PostgreSQL (STYLE: "a fault-injecting
proxy in front of PostgreSQL"): the node under test connects to it as to any server.

Modes, switched by the test at any moment:

- ``forward``: bytes pass both ways untouched (to the server's Unix socket or TCP port);
- ``starting_up``: every new connection is answered the way a PostgreSQL that is still
  starting answers (SQLSTATE 57P03, "the database system is starting up"), and
  ``drop_connections`` ends the ones open now, so a pool has to reconnect into it;
- ``refuse``: the listening socket is closed (connection refused);
- ``freeze``: a server that is stopped (SIGSTOP) rather than down: new connections are
  accepted and held, and no byte moves either way on the open ones, until ``thaw``
  delivers everything held back (as a continued server reads what its sockets queued).

Only PostgreSQL, outside the project, is stood in for; the registry, the cache and the
fronts under test are the real ones.
"""

from __future__ import annotations

import asyncio
import struct
from urllib.parse import parse_qs, urlsplit

SSL_REQUEST = 80877103
GSS_REQUEST = 80877104


def _error_response(sqlstate: str, message: str) -> bytes:
    fields = b"".join(
        kind + text.encode() + b"\0"
        for kind, text in ((b"S", "FATAL"), (b"V", "FATAL"), (b"C", sqlstate), (b"M", message))
    )
    body = fields + b"\0"
    return b"E" + struct.pack(">I", len(body) + 4) + body


class PgProxy:
    def __init__(self, upstream_dsn: str):
        parts = urlsplit(upstream_dsn)
        query = parse_qs(parts.query)
        self.database = parts.path.lstrip("/")
        self.user = parts.username or "idnode"
        host = query.get("host", [parts.hostname or "127.0.0.1"])[0]
        port = int(query.get("port", [str(parts.port or 5432)])[0])
        self._upstream: tuple[str, int] | str = (
            f"{host.rstrip('/')}/.s.PGSQL.{port}" if host.startswith("/") else (host, port)
        )
        self.mode = "forward"
        self.port = 0
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._flowing = asyncio.Event()  # clear while frozen
        self._flowing.set()

    @property
    def dsn(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.database}?sslmode=disable"

    async def start(self) -> PgProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        await self.refuse()
        self.drop_connections()

    async def refuse(self) -> None:
        """Close the listener: new connections are refused (a server that is down)."""
        self.mode = "refuse"
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def resume(self) -> None:
        self.mode = "forward"
        self._flowing.set()
        if self._server is None:
            await self.start()

    def freeze(self) -> None:
        """Stop moving bytes, and hold new connections (a SIGSTOPped server)."""
        self.mode = "freeze"
        self._flowing.clear()

    def thaw(self) -> None:
        """Move bytes again, what was held back first (SIGCONT)."""
        self.mode = "forward"
        self._flowing.set()

    def drop_connections(self) -> None:
        for writer in list(self._open):
            writer.transport.abort()
        self._open.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._open.add(writer)
        try:
            if self.mode == "starting_up":
                await self._starting_up(reader, writer)
                return
            await self._flowing.wait()  # frozen: accepted (the backlog) but not served
            if isinstance(self._upstream, str):
                up_reader, up_writer = await asyncio.open_unix_connection(self._upstream)
            else:
                up_reader, up_writer = await asyncio.open_connection(*self._upstream)
            self._open.add(up_writer)
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.transport.abort()
            self._open.discard(writer)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await self._flowing.wait()  # frozen: the bytes stay queued in the socket
                data = await reader.read(65536)
                if not data:
                    return
                await self._flowing.wait()  # read just as it froze: held until the thaw
                writer.write(data)
                await writer.drain()
        finally:
            writer.transport.abort()

    @staticmethod
    async def _starting_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            (length,) = struct.unpack(">I", await reader.readexactly(4))
            payload = await reader.readexactly(length - 4)
            (code,) = struct.unpack(">I", payload[:4])
            if code in (SSL_REQUEST, GSS_REQUEST):
                writer.write(b"N")  # no encryption here; the client goes on in the clear
                continue
            writer.write(_error_response("57P03", "the database system is starting up"))
            await writer.drain()
            return
