"""The native Handle fronts on port 2641: UDP (node.fronts.native.udp) and TCP
(node.fronts.native.tcp), both thin framers over the one NativeHandler, bound to the
same port.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket

from node.fronts.native.handler import NativeHandler
from node.fronts.native.tcp import TcpFront
from node.fronts.native.udp import UdpFront
from node.runtime.conns import FdBudget
from node.runtime.listen import Acceptor, tcp_listener
from node.runtime.metrics import NodeMetrics
from node.settings import Settings

log = logging.getLogger("idnode.native")
# Tries to find, for port 0, a port number free for both UDP and TCP.
_PORT_ATTEMPTS = 20


class NativeServer:
    """Binds UDP and TCP on one address and port (port 0: UDP picks, TCP follows).

    ``reuse_port``: both sockets set SO_REUSEPORT, so the worker processes of one node
    (node.serving.supervisor) listen on the same port and the kernel spreads clients over them.
    """

    def __init__(
        self,
        handler: NativeHandler,
        metrics: NodeMetrics,
        settings: Settings,
        *,
        reuse_port: bool = False,
        fds: FdBudget | None = None,
    ):
        self.udp = UdpFront(handler, metrics, settings)
        self.tcp = TcpFront(handler, metrics, settings, fds=fds)
        self._udp_transport: asyncio.DatagramTransport | None = None
        self._tcp_server: Acceptor | None = None
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
            self._tcp_server = self.tcp.listen(
                tcp_listener(host, bound, reuse_port=self._reuse_port)
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
