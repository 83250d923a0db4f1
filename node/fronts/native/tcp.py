"""The native TCP front: a connection carries any number of requests, answered in
order, until the client closes or stays idle for ``tcp_idle_timeout_s`` (the IDIS SDK
pipelines requests on one connection without KPAL; the reference closed after one).

A connection is closed at once (counted) past ``tcp_max_connections`` in all, past
``tcp_max_connections_per_source`` from one address (so one host cannot hold every
connection and lock the others out), or when the process is short of file descriptors
(node.runtime.conns). A client that stops reading its replies is disconnected after
``tcp_write_timeout_s``: otherwise it would hold its connection, and the replies
buffered for it, for ever.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from time import perf_counter

from node.fronts.native.frames import messages
from node.fronts.native.handler import NativeHandler
from node.fronts.native.peer import Connection, Peer, sockaddr
from node.runtime.accesslog import reply_code
from node.runtime.conns import ConnectionGate, FdBudget, Refusal, Ticket
from node.runtime.listen import Acceptor
from node.runtime.lograte import LogEvery
from node.runtime.metrics import NodeMetrics
from node.runtime.sources import peer_keys
from node.settings import Settings
from protocol.message import ENVELOPE_BYTES, LENGTH_OFFSET, MAX_MESSAGE_BYTES

_U32 = struct.Struct(">I")
STREAM_LIMIT = MAX_MESSAGE_BYTES + ENVELOPE_BYTES  # the reader's buffer: one whole message
log = logging.getLogger("idnode.native")


class _TooSlow(Exception):
    """The client did not take its replies within tcp_write_timeout_s."""


class TcpFront:
    def __init__(
        self,
        handler: NativeHandler,
        metrics: NodeMetrics,
        settings: Settings,
        *,
        fds: FdBudget | None = None,
    ):
        self.handler = handler
        self.metrics = metrics
        self.idle_timeout_s = settings.tcp_idle_timeout_s
        self.write_timeout_s = settings.tcp_write_timeout_s
        self.gate = ConnectionGate(
            "tcp",
            metrics,
            max_connections=settings.tcp_max_connections,
            per_source=settings.tcp_max_connections_per_source,
            keys=peer_keys(settings.rate_limit_exempt_networks),
            fds=fds if fds is not None else FdBudget(settings.fd_reserve),
        )
        self._write_timeouts = metrics.connections_timed_out.labels("tcp", "write_timeout")
        self._write_timeout_log = LogEvery(log, logging.INFO)

    def listen(self, sock: socket.socket) -> Acceptor:
        """Serve the connections of the listening socket ``sock``, each admitted by the
        gate as it is accepted (node.runtime.listen), before any buffer or task exists
        for it; the caller closes the acceptor."""
        loop = asyncio.get_running_loop()

        def connection(ticket: Ticket | None) -> asyncio.BaseProtocol:
            async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                await self._serve_admitted(reader, writer, ticket)

            reader = asyncio.StreamReader(limit=STREAM_LIMIT, loop=loop)
            return asyncio.StreamReaderProtocol(reader, serve, loop=loop)

        acceptor = Acceptor(sock, "tcp", connection, self.metrics, gate=self.gate)
        acceptor.start()
        return acceptor

    async def serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """A connection accepted elsewhere (``asyncio.start_server``): admitted here."""
        address = sockaddr(writer.get_extra_info("peername") or ("?", 0))
        sock = writer.get_extra_info("socket")
        ticket = self.gate.admit(address[0], sock.fileno() if sock is not None else -1)
        if isinstance(ticket, Refusal):
            writer.transport.abort()  # nothing to flush; no FIN-WAIT to hold
            return
        await self._serve_admitted(reader, writer, ticket)

    async def _serve_admitted(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ticket: Ticket | None
    ) -> None:
        address = sockaddr(writer.get_extra_info("peername") or ("?", 0))
        peer = Peer("tcp", address, Connection())
        try:
            await self._serve(reader, writer, peer)
        except _TooSlow:
            self._write_timeouts.inc()
            self._write_timeout_log(
                "native TCP: disconnected %s: replies not read within %g s (tcp_write_timeout_s)",
                address[0],
                self.write_timeout_s,
            )
            writer.transport.abort()  # close() would wait to send what it never reads
        except (ConnectionError, OSError):
            pass
        finally:
            if ticket is not None:
                ticket.release()
            writer.close()

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: Peer
    ) -> None:
        host = peer.address[0] if peer.address is not None else None
        while True:
            try:
                envelope = await asyncio.wait_for(
                    reader.readexactly(ENVELOPE_BYTES), self.idle_timeout_s
                )
            except (asyncio.IncompleteReadError, TimeoutError):
                return  # client closed, or idle too long
            (length,) = _U32.unpack_from(envelope, LENGTH_OFFSET)
            if length > MAX_MESSAGE_BYTES:
                # Answer with the request id echoed, then close: the stream cannot be
                # resynchronised past a message we refuse to read.
                for message in messages(await self.handler.handle(envelope, peer)):
                    writer.write(message)
                await self._drain(writer)
                return
            try:
                rest = await asyncio.wait_for(reader.readexactly(length), self.idle_timeout_s)
            except (asyncio.IncompleteReadError, TimeoutError):
                return
            data = envelope + rest
            started = perf_counter()
            cached = self.handler.cached_reply(data, "tcp", peer.address)
            if cached is not None:
                writer.write(cached)
                elapsed = perf_counter() - started
                self.handler.front_stats["tcp"].observe(elapsed)
                access = self.metrics.access
                if access.mode != "off":  # node.runtime.accesslog
                    access.hit("tcp", data, reply_code(cached), elapsed, host)
                await self._drain(writer)
                continue
            for message in messages(await self.handler.handle(data, peer)):
                writer.write(message)
            await self._drain(writer)

    async def _drain(self, writer: asyncio.StreamWriter) -> None:
        """``writer.drain()``, bounded: drain waits only while more is buffered than the
        transport's high-water mark, i.e. while the client is not reading."""
        if not writer.transport.get_write_buffer_size():
            return  # all handed to the kernel: nothing to wait for
        try:
            async with asyncio.timeout(self.write_timeout_s):
                await writer.drain()
        except TimeoutError:
            raise _TooSlow from None
