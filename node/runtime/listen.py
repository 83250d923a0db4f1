"""Listening TCP sockets, and the accept loop of the HTTP and health ports.

Sockets are made here rather than by asyncio: ``bind = ::`` means every address, IPv4
included (IPV6_V6ONLY off), as it does for the native UDP socket. asyncio's own
``create_server`` sets IPV6_V6ONLY, which would make the HTTP API and native TCP
IPv6-only while native UDP answered both.

``Acceptor`` accepts connections itself instead of handing the socket to
``loop.create_server``, for two reasons:

- it sees each peer before any protocol, buffer or TLS handshake exists, so a connection
  over a cap (node.runtime.conns) costs one accept and one close;
- it survives running out of file descriptors. On EMFILE/ENFILE uvloop (libuv) closes
  its listener for good, without a word; the default loop logs a traceback every second.
  Here the error is counted, logged as one line (rate-limited), and accepting pauses
  for ``ACCEPT_PAUSE_S`` before it resumes: the kernel keeps new connections queued.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import TypeVar

from node.errors import PortUnavailable
from node.runtime.conns import FRONT_NAMES, ConnectionGate, Refusal, Ticket, open_files_limit
from node.runtime.lograte import LogEvery
from node.runtime.metrics import NodeMetrics

BACKLOG = 1024
ACCEPT_PAUSE_S = 0.5
# Accepts per wake-up: the rest wait for the next turn of the loop, so a connection
# flood cannot keep the loop from everything else.
ACCEPTS_PER_TURN = 64

log = logging.getLogger("idnode.connections")
T = TypeVar("T")

# Builds the protocol of an admitted connection; its ``connection_lost`` must release
# the ticket (None when the port has no gate).
ProtocolFactory = Callable[[Ticket | None], asyncio.BaseProtocol]


def tcp_listener(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if host == "::" else 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class Acceptor:
    """Accepts connections on ``sock`` (a listening socket it now owns) for ``front``.

    ``gate``: the caps each connection must pass (None: every connection is taken).
    ``refusal``: bytes sent to a refused connection before it is closed (an HTTP 503),
    None to just close it. ``ssl``: TLS, its handshake bounded by ``handshake_timeout_s``.
    """

    def __init__(
        self,
        sock: socket.socket,
        front: str,
        protocol_factory: ProtocolFactory,
        metrics: NodeMetrics,
        *,
        gate: ConnectionGate | None = None,
        refusal: Callable[[Refusal], bytes] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        handshake_timeout_s: float | None = None,
    ):
        self.sock = sock
        self.front = front
        self.protocol_factory = protocol_factory
        self.metrics = metrics
        self.gate = gate
        self.refusal = refusal
        self.ssl_context = ssl_context
        self.handshake_timeout_s = handshake_timeout_s
        self.port = int(sock.getsockname()[1])
        self._loop = asyncio.get_running_loop()
        self._fd = sock.fileno()
        self._accepting = False
        self._closed = False
        self._resume: asyncio.TimerHandle | None = None
        self._connecting: set[asyncio.Task[None]] = set()
        self._exhausted_log = LogEvery(log)

    def start(self) -> None:
        if not self._accepting and not self._closed:
            self._loop.add_reader(self._fd, self._accept)
            self._accepting = True

    def close(self) -> None:
        """Stop accepting and close the listening socket; open connections stay (their
        server shuts them down). Handshakes under way are abandoned."""
        if self._closed:
            return
        self._closed = True
        self._pause()
        if self._resume is not None:
            self._resume.cancel()
        self.sock.close()
        for task in self._connecting:
            task.cancel()

    async def wait_closed(self) -> None:
        if self._connecting:
            await asyncio.gather(*self._connecting, return_exceptions=True)

    def _pause(self) -> None:
        if self._accepting:
            self._loop.remove_reader(self._fd)
            self._accepting = False

    def _resume_accepting(self) -> None:
        self._resume = None
        self.start()

    def _accept(self) -> None:
        for _ in range(ACCEPTS_PER_TURN):
            try:
                conn, address = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue  # the client gave up while queued
            except OSError as exc:
                self._cannot_accept(exc)
                return
            self._admit(conn, address)

    def _cannot_accept(self, exc: OSError) -> None:
        """EMFILE, ENFILE, ENOBUFS, ENOMEM: out of a resource. Count, say so once in a
        while, and pause: accepting again at once would spin on the same error."""
        error = errno.errorcode.get(exc.errno or 0, str(exc.errno))
        self.metrics.accept_errors.labels(self.front, error).inc()
        self._exhausted_log(
            "%s: cannot accept connections (%s: %s, open files limit %d); pausing accepts "
            "for %.1f s: raise the limit, or lower the connection caps or fd_reserve",
            FRONT_NAMES.get(self.front, self.front),
            error,
            exc.strerror,
            open_files_limit(),
            ACCEPT_PAUSE_S,
        )
        self._pause()
        if self._resume is None:
            self._resume = self._loop.call_later(ACCEPT_PAUSE_S, self._resume_accepting)

    def _admit(self, conn: socket.socket, address: object) -> None:
        conn.setblocking(False)
        ticket: Ticket | None = None
        if self.gate is not None:
            host = address[0] if isinstance(address, tuple) else None
            verdict = self.gate.admit(host, conn.fileno())
            if isinstance(verdict, Refusal):
                self._refuse(conn, verdict)
                return
            ticket = verdict
        if conn.family in (socket.AF_INET, socket.AF_INET6):
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        task = self._loop.create_task(self._connect(conn, ticket))
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)

    def _refuse(self, conn: socket.socket, refusal: Refusal) -> None:
        try:
            if self.refusal is not None:
                conn.send(self.refusal(refusal))
            # Read what the client sent already: closing with unread data would reset
            # the connection, and a reset can discard the refusal before it is read.
            conn.recv(65536)
        except OSError:
            pass  # nothing sent yet (EAGAIN), or the client left: close all the same
        finally:
            conn.close()

    async def _connect(self, conn: socket.socket, ticket: Ticket | None) -> None:
        def protocol() -> asyncio.BaseProtocol:
            return self.protocol_factory(ticket)

        try:
            if self.ssl_context is None:
                await self._loop.connect_accepted_socket(protocol, conn)
            else:
                await self._loop.connect_accepted_socket(
                    protocol,
                    conn,
                    ssl=self.ssl_context,
                    ssl_handshake_timeout=self.handshake_timeout_s,
                )
        except BaseException as exc:
            # The transport closed the socket; no protocol saw the connection.
            if ticket is not None:
                ticket.release()
            if not isinstance(exc, Exception):
                raise
            log.debug("%s: connection not set up: %r", self.front, exc)


async def bind_port(what: str, host: str, port: int, start: Callable[[], Awaitable[T]]) -> T:
    """Run ``start`` (a listener binding ``port``); a refusal becomes one clear line."""
    try:
        return await start()
    except OSError as exc:
        # uvloop reports a UDP bind failure without an errno, the cause holding it.
        cause = exc.__cause__ if exc.errno is None and isinstance(exc.__cause__, OSError) else exc
        if cause.errno == errno.EADDRINUSE:
            raise PortUnavailable(
                f"{what} port {port} on {host} is in use by another process"
            ) from None
        raise PortUnavailable(
            f"cannot listen on {what} port {port} on {host}: {cause.strerror or cause}"
        ) from None
