"""The native TCP front: a connection carries any number of requests, answered in
order, until the client closes or stays idle for ``tcp_idle_timeout_s`` (the IDIS SDK
pipelines requests on one connection without KPAL; the reference closed after one).
Connections beyond ``tcp_max_connections`` are closed at once.
"""

from __future__ import annotations

import asyncio
import struct
from time import perf_counter

from node.fronts.native.frames import messages
from node.fronts.native.handler import NativeHandler
from node.fronts.native.peer import Connection, Peer, sockaddr
from node.runtime.metrics import NodeMetrics
from node.settings import Settings
from protocol.message import ENVELOPE_BYTES, LENGTH_OFFSET, MAX_MESSAGE_BYTES

_U32 = struct.Struct(">I")


class TcpFront:
    def __init__(
        self,
        handler: NativeHandler,
        metrics: NodeMetrics,
        settings: Settings,
    ):
        self.handler = handler
        self.metrics = metrics
        self.max_connections = settings.tcp_max_connections
        self.idle_timeout_s = settings.tcp_idle_timeout_s
        self.connections = 0

    async def serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if self.connections >= self.max_connections:
            self.metrics.dropped.labels("tcp", "too_many_connections").inc()
            writer.close()
            return
        self.connections += 1
        peer = Peer("tcp", sockaddr(writer.get_extra_info("peername") or ("?", 0)), Connection())
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
                    for message in messages(await self.handler.handle(envelope, peer)):
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
                for message in messages(await self.handler.handle(data, peer)):
                    writer.write(message)
                await writer.drain()
        except (ConnectionError, OSError):
            return
        finally:
            self.connections -= 1
            writer.close()
