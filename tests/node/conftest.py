"""Native-front fixtures: a real node on loopback over a real PostgreSQL, seeded with the
golden records, and raw UDP/TCP sockets to talk to it byte for byte.

The node's clock is fixed (``CLOCK``), so every reply's expiration is ``EXPIRATION``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from node.app import Node
from node.demo.seed import seed_records
from node.settings import load_settings
from protocol.creditcode import check_character
from protocol.message import ENVELOPE_BYTES, LENGTH_OFFSET
from protocol.negotiate import REPLY_LIFETIME_S
from tests.node.http_support import Api, SteppedClock
from tests.protocol.golden import vectors_dir

CLOCK = 1_795_500_000.0  # the node's fixed clock, unix seconds
EXPIRATION = int(CLOCK) + REPLY_LIFETIME_S
SEED_TIME = datetime.fromtimestamp(CLOCK, UTC)
OWNER_CODE = "91320509MA1G1DEN0" + check_character("91320509MA1G1DEN0")
SEED_ACTOR = "test:golden"
# How long to wait for a reply that must come (generous: a loaded CI box) and how long
# to listen before concluding that none will (bounded; only ever used for silence).
REPLY_TIMEOUT_S = 5.0
SILENCE_S = 0.3

_U32 = struct.Struct(">I")

StartNode = Callable[..., Awaitable[Node]]


def golden_records() -> list[tuple[str, Any]]:
    seed = json.loads((vectors_dir() / "handle-golden-seed.json").read_text(encoding="utf-8"))
    return [(handle, rec["values"]) for handle, rec in seed["handleRecords"].items()]


async def seed_golden(node: Node) -> None:
    """The capture's records, owned by one enterprise holding 88.118 and 88.118.2; value
    timestamps stay as in the seed file (0), as on the reference. Written through the
    node's own write service (HS_SECKEY secrets hashed with its iteration count)."""
    assert node.db is not None
    registry = node.db.registry
    await registry.add_enterprise("盛泽金样丝绸有限公司", OWNER_CODE, "ops@example.com", SEED_TIME)
    for prefix in ("88.118", "88.118.2"):
        await registry.add_prefix(prefix, OWNER_CODE, SEED_TIME)
    await seed_records(
        registry,
        golden_records(),
        actor=SEED_ACTOR,
        now=SEED_TIME,
        keep_timestamps=True,
        writes=node.writes,
    )


def ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


async def start_seeded_node(
    database_url: str, data_dir: Path, bind: str = "127.0.0.1", **flags: Any
) -> Node:
    """A started node (all ports 0, data dir holding only its site key) on a database it
    seeds with the golden records. The caller stops it."""
    settings = load_settings(
        env={},
        flags={
            "database_url": database_url,
            "data_dir": str(data_dir),
            "bind": bind,
            "handle_port": 0,
            "admin_port": 0,
            "http_port": 0,
            # The minimum: PBKDF2 at the default 600,000 would dominate each test's setup
            # (one HS_SECKEY in the seed), and hashing strength is not under test here.
            "prefixes": "88.118",
            # The golden replies are the reference's captures of unsigned records, byte for
            # byte; signing is tested on its own nodes (test_signing.py).
            "sign_records": False,
            **flags,
        },
    )
    node = Node(settings, clock=lambda: CLOCK)
    await node.start()
    try:
        assert node.resolver is not None
        await seed_golden(node)
        await node.resolver.refresh_prefixes()
    except BaseException:
        await node.stop()
        raise
    return node


@pytest.fixture
async def start_node(database_url: str, tmp_path: Path) -> AsyncIterator[StartNode]:
    """Start one seeded node on this test's fresh database: ``await start_node(bind)``."""
    nodes: list[Node] = []

    async def start(bind: str = "127.0.0.1", **flags: Any) -> Node:
        assert not nodes, "one seeded node per database"
        nodes.append(await start_seeded_node(database_url, tmp_path / "node", bind, **flags))
        return nodes[0]

    try:
        yield start
    finally:
        for node in nodes:
            await node.stop()


@pytest.fixture
async def native_node(start_node: StartNode) -> Node:
    """A seeded node on 127.0.0.1, fresh (database and metrics) for each test."""
    return await start_node()


# --- raw sockets ------------------------------------------------------------------------


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.errors: list[Exception] = []

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.queue.put_nowait(data)

    def error_received(self, exc: Exception) -> None:
        self.errors.append(exc)


class UdpPeer:
    """A connected UDP socket: send datagrams, receive them one at a time or as one
    (possibly fragmented) message."""

    def __init__(self, transport: asyncio.DatagramTransport, proto: _Datagrams):
        self.transport = transport
        self.proto = proto

    def send(self, datagram: bytes) -> None:
        self.transport.sendto(datagram)

    async def recv(self, timeout_s: float = REPLY_TIMEOUT_S) -> bytes:
        return await asyncio.wait_for(self.proto.queue.get(), timeout_s)

    async def recv_message(self, timeout_s: float = REPLY_TIMEOUT_S) -> list[bytes]:
        """The datagrams of one reply, in arrival order, until their payloads add up to
        the message length the first one announces."""
        datagrams = [await self.recv(timeout_s)]
        total = _U32.unpack_from(datagrams[0], LENGTH_OFFSET)[0]
        got = len(datagrams[0]) - ENVELOPE_BYTES
        while got < total:
            datagrams.append(await self.recv(timeout_s))
            got += len(datagrams[-1]) - ENVELOPE_BYTES
        return datagrams

    async def assert_silent(self, wait_s: float = SILENCE_S) -> None:
        """Nothing (more) arrives within a short bounded wait. Absence cannot be proven
        by waiting; callers order a reply that must come after the one that must not,
        so this only guards against late extras."""
        try:
            extra = await asyncio.wait_for(self.proto.queue.get(), wait_s)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected datagram {extra.hex()}")


async def udp_peer(host: str, port: int) -> UdpPeer:
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    transport, proto = await loop.create_datagram_endpoint(
        _Datagrams, remote_addr=(host, port), family=family
    )
    return UdpPeer(transport, proto)


@pytest.fixture
async def node_udp(native_node: Node) -> AsyncIterator[UdpPeer]:
    """A UDP socket connected to ``native_node``."""
    assert native_node.handle_port is not None
    peer = await udp_peer("127.0.0.1", native_node.handle_port)
    try:
        yield peer
    finally:
        peer.transport.close()


async def read_message(reader: asyncio.StreamReader, timeout_s: float = REPLY_TIMEOUT_S) -> bytes:
    """One TCP message: the envelope, then the length it announces."""
    envelope = await asyncio.wait_for(reader.readexactly(ENVELOPE_BYTES), timeout_s)
    (length,) = _U32.unpack_from(envelope, LENGTH_OFFSET)
    return envelope + await asyncio.wait_for(reader.readexactly(length), timeout_s)


async def tcp_exchange(host: str, port: int, data: bytes) -> bytes:
    """Send one request on a new connection and read one reply message."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(data)
        await writer.drain()
        return await read_message(reader)
    finally:
        writer.close()
        await writer.wait_closed()


# --- a node with the demo data, and an HTTP client for it ----------------------------


@pytest.fixture
async def start_http_node(database_url: str, tmp_path: Path) -> AsyncIterator[StartNode]:
    nodes: list[Node] = []

    async def start(
        *, bind: str = "127.0.0.1", clock: Callable[[], float] = time.time, **flags: Any
    ) -> Node:
        settings = load_settings(
            env={},
            flags={
                "database_url": database_url,
                # Nodes sharing a registry share their key directory (signing keys and
                # the key secrets are sealed with), as a deployment's nodes must.
                "data_dir": str(tmp_path / "node"),
                "bind": bind,
                "handle_port": 0,
                "admin_port": 0,
                "http_port": 0,
                "demo": True,
                **flags,
            },
        )
        node = Node(settings, clock=clock, monotonic=SteppedClock())
        await node.start()
        nodes.append(node)
        return node

    try:
        yield start
    finally:
        for node in reversed(nodes):
            await node.stop()


@pytest.fixture
async def http_node(start_http_node: StartNode) -> Node:
    return await start_http_node()


@pytest.fixture
async def api(http_node: Node) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(session, f"http://127.0.0.1:{http_node.http_port}")
