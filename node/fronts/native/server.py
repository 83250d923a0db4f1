"""The native Handle fronts on port 2641: UDP and TCP, both thin framers over the one
NativeHandler.

UDP: each datagram (or reassembled message) becomes a task; at most
``udp_max_inflight`` run at once and the rest are dropped and counted, so a flood
cannot queue unbounded work. Replies longer than one datagram are fragmented into
512-byte datagrams, as the reference Java client expects.

TCP: a connection carries any number of requests, answered in order, until the client
closes or stays idle for ``tcp_idle_timeout_s`` (the IDIS SDK pipelines requests on one
connection without KPAL; the reference closed after one). Connections beyond
``tcp_max_connections`` are closed at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import struct
import time
from collections.abc import Callable
from time import perf_counter

from node.fronts.native.handler import NativeHandler, Reply
from node.fronts.native.peer import Connection, Peer
from node.runtime.listen import tcp_listener
from node.runtime.metrics import NodeMetrics
from protocol.errors import ProtocolError
from protocol.fragment import MAX_DATAGRAM_BYTES, Reassembler, fragment_encoded
from protocol.message import ENVELOPE_BYTES, LENGTH_OFFSET, MAX_MESSAGE_BYTES
from protocol.replycache import resolution_shape

log = logging.getLogger("idnode.native")
_U32 = struct.Struct(">I")
# Tries to find, for port 0, a port number free for both UDP and TCP.
_PORT_ATTEMPTS = 20


def _messages(reply: Reply) -> list[bytes]:
    """The reply messages to send, in order (LIST_HANDLES sends several)."""
    if reply is None:
        return []
    return reply if isinstance(reply, list) else [reply]


def _sockaddr(addr: tuple[str, int] | tuple[str, int, int, int]) -> tuple[str, int]:
    return (addr[0], addr[1])


class UdpFront(asyncio.DatagramProtocol):
    def __init__(
        self,
        handler: NativeHandler,
        metrics: NodeMetrics,
        *,
        max_inflight: int,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.handler = handler
        self.metrics = metrics
        self.max_inflight = max_inflight
        self.clock = clock
        self.inflight = 0
        self.closing = False
        self.transport: asyncio.DatagramTransport | None = None
        self.reassembler = Reassembler()
        self._tasks: set[asyncio.Task[None]] = set()
        # The hot path, answered here, synchronously, without a task: what it touches,
        # bound once (every attribute lookup saved is measurable at 50k replies/s).
        self._replies = handler.replies
        cache = handler.cache
        self._touch = cache.entries.move_to_end if cache is not None else None
        self._monotonic = cache.monotonic if cache is not None else time.monotonic
        self._wall = handler.clock
        self._stats = handler.front_stats["udp"]
        self._hits = self._stats.hits
        self._recurses = handler.may_recurse

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._sendto = transport.sendto  # type: ignore[attr-defined]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        # Cache hits are answered even while closing: they cost no task, and during a
        # rolling restart (SO_REUSEPORT) this socket still gets its share until closed.
        replies = self._replies
        if replies:
            shape = resolution_shape(data)
            hit = replies.get(shape) if shape is not None else None
            if (
                hit is not None
                and hit.entry.expires > self._monotonic()
                # A record from upstream goes only to clients allowed recursion.
                and (not hit.entry.foreign or self._recurses(addr[0]))
            ):
                started = perf_counter()
                self._touch(hit.entry.key)  # type: ignore[misc]
                self._hits[hit.rc] = self._hits.get(hit.rc, 0) + 1
                reply = hit.fit(data, self._wall())
                if len(reply) <= MAX_DATAGRAM_BYTES:
                    self._sendto(reply, addr)
                else:
                    for datagram in fragment_encoded(reply):
                        self._sendto(datagram, addr)
                self._stats.observe(perf_counter() - started)
                return
        if self.closing:
            return  # shutting down: in-flight requests finish, new ones are not taken
        if self.inflight >= self.max_inflight:
            self.metrics.dropped.labels("udp", "overload").inc()
            return
        if (
            len(data) >= ENVELOPE_BYTES
            and _U32.unpack_from(data, LENGTH_OFFSET)[0] != len(data) - ENVELOPE_BYTES
        ):
            try:
                whole = self.reassembler.feed(data, self.clock(), addr)
            except ProtocolError:
                whole = data  # let the handler answer the malformed fragment with RC 4
            if whole is None:
                return  # waiting for more fragments
            data = whole
        self.inflight += 1
        task = asyncio.get_running_loop().create_task(self._answer(data, addr))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            reply = await self.handler.handle(data, Peer("udp", _sockaddr(addr)))
            if self.transport is not None:
                for message in _messages(reply):
                    for datagram in fragment_encoded(message):
                        self.transport.sendto(datagram, addr)
        except Exception:
            log.exception("UDP reply to %s failed", addr[0])
        finally:
            self.inflight -= 1

    def error_received(self, exc: Exception) -> None:
        # ICMP errors for earlier replies (the client went away): nothing to do.
        self.metrics.dropped.labels("udp", "send_error").inc()

    async def drain(self, timeout_s: float) -> None:
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout_s)


class TcpFront:
    def __init__(
        self,
        handler: NativeHandler,
        metrics: NodeMetrics,
        *,
        max_connections: int,
        idle_timeout_s: float,
    ):
        self.handler = handler
        self.metrics = metrics
        self.max_connections = max_connections
        self.idle_timeout_s = idle_timeout_s
        self.connections = 0

    async def serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if self.connections >= self.max_connections:
            self.metrics.dropped.labels("tcp", "too_many_connections").inc()
            writer.close()
            return
        self.connections += 1
        peer = Peer("tcp", _sockaddr(writer.get_extra_info("peername") or ("?", 0)), Connection())
        try:
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
                    for message in _messages(await self.handler.handle(envelope, peer)):
                        writer.write(message)
                    await writer.drain()
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
                    self.handler.front_stats["tcp"].observe(perf_counter() - started)
                    await writer.drain()
                    continue
                for message in _messages(await self.handler.handle(data, peer)):
                    writer.write(message)
                await writer.drain()
        except (ConnectionError, OSError):
            return
        finally:
            self.connections -= 1
            writer.close()


class NativeServer:
    """Binds UDP and TCP on one address and port (port 0: UDP picks, TCP follows).

    ``reuse_port``: both sockets set SO_REUSEPORT, so the worker processes of one node
    (node.serving.supervisor) listen on the same port and the kernel spreads clients over them.
    """

    def __init__(
        self,
        handler: NativeHandler,
        metrics: NodeMetrics,
        *,
        max_inflight: int,
        max_connections: int,
        idle_timeout_s: float,
        reuse_port: bool = False,
    ):
        self.udp = UdpFront(handler, metrics, max_inflight=max_inflight)
        self.tcp = TcpFront(
            handler, metrics, max_connections=max_connections, idle_timeout_s=idle_timeout_s
        )
        self._udp_transport: asyncio.DatagramTransport | None = None
        self._tcp_server: asyncio.Server | None = None
        self._reuse_port = reuse_port
        self.port = 0

    async def start(self, host: str, port: int) -> int:
        # Port 0: UDP picks a free port and TCP takes the same number, which may be busy
        # for TCP (another listener, or a local end of an outgoing connection): pick again.
        attempts = _PORT_ATTEMPTS if port == 0 else 1
        for _ in range(attempts):
            bound = await self._bind(host, port)
            if bound is not None:
                self.port = bound
                return bound
        raise OSError(
            errno.EADDRINUSE, f"no port free for both UDP and TCP on {host} after {attempts} tries"
        )

    async def _bind(self, host: str, port: int) -> int | None:
        """UDP then TCP on the same port; None (nothing left open) when port 0 was asked
        for and the port UDP picked is taken for TCP."""
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        transport, _ = await loop.create_datagram_endpoint(
            lambda: self.udp, local_addr=(host, port), family=family, reuse_port=self._reuse_port
        )
        bound = transport.get_extra_info("sockname")[1]
        sock = transport.get_extra_info("socket")
        # Room for bursts: the default receive buffer drops under load long before the
        # handler is saturated. (Capped by the kernel's rmem_max; a refusal is no error.)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        try:
            self._tcp_server = await asyncio.start_server(
                self.tcp.serve_connection,
                sock=tcp_listener(host, bound, reuse_port=self._reuse_port),
                limit=MAX_MESSAGE_BYTES + ENVELOPE_BYTES,
            )
        except OSError as exc:
            transport.close()  # the caller never gets to stop() a half-started server
            if port == 0 and exc.errno == errno.EADDRINUSE:
                log.debug("port %d picked for UDP is busy for TCP; picking another", bound)
                return None
            raise
        self._udp_transport = transport
        return int(bound)

    async def stop(self, timeout_s: float) -> None:
        if self._tcp_server is not None:
            self._tcp_server.close()
        # Answer what is in flight before closing the socket the replies go out on.
        self.udp.closing = True
        await self.udp.drain(timeout_s)
        if self._udp_transport is not None:
            self._udp_transport.close()
        if self._tcp_server is not None:
            try:
                await asyncio.wait_for(self._tcp_server.wait_closed(), timeout_s)
            except TimeoutError:
                log.warning("native TCP connections still open after %.0f s", timeout_s)
