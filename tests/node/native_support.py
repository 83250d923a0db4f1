"""Shared pieces of the native-front tests: requests built byte for byte, what a reply
holds, the node's own request counts, and control over the cache's notifications."""

from __future__ import annotations

import asyncio
import secrets
import struct
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from cryptography.hazmat.primitives import serialization

from node.app import Node
from node.client.native import DEFAULT_FLAGS
from node.demo.dataset import SILK_MILL
from protocol.bodies import ResolutionReply, ResolutionRequest
from protocol.codes import OpCode, OpFlag, ResponseCode
from protocol.fragment import fragment_encoded
from protocol.message import Envelope, Header, Message, decode, encode
from tests.node.challenge_support import PrivateKey
from tests.node.conftest import EXPIRATION, UdpPeer, udp_peer
from tests.node.http_support import Api, admin_of

ABC = "88.118.2/ABC123"
SECRET_DATA = b"admin-eyes-only"  # 88.118.2/PRIVATE index 2, permissions 1000 (admin read only)
_U32 = struct.Struct(">I")


def request_bytes(
    handle: str,
    indexes: tuple[int, ...] = (),
    types: tuple[str, ...] = (),
    *,
    flags: OpFlag = DEFAULT_FLAGS,
    envelope: Envelope | None = None,
) -> bytes:
    env = envelope or Envelope(request_id=secrets.randbits(31) or 1)
    header = Header(OpCode.RESOLUTION, flags=flags, expiration=int(EXPIRATION))
    return encode(Message(env, header, ResolutionRequest(handle, indexes, types)))


def request_id(data: bytes) -> int:
    return int(_U32.unpack_from(data, 8)[0])


def served(node: Node, front: str, op: str = "resolution", rc: int = 1) -> float:
    labels = {"front": front, "op": op, "rc": str(int(rc))}
    return node.metrics.registry.get_sample_value("idnode_requests_total", labels) or 0.0


def indexes_of(reply: Message) -> list[int]:
    assert reply.header.response_code == ResponseCode.SUCCESS, reply
    assert isinstance(reply.body, ResolutionReply)
    return [v.index for v in reply.body.values]


async def announce(node: Node, key: str) -> None:
    """Notify a change of ``key`` on the channel the handles triggers use (migration
    0003's payload: clock line, then keys) and wait until the node has heard it."""
    assert node.cache is not None and node.db is not None
    heard = node.cache.invalidated(key)
    conn = await asyncpg.connect(node.db.dsn)
    try:
        await conn.execute(
            "SELECT pg_notify('idnode_handles', $1)", f"{int(time.time() * 1000)}\n{key}"
        )
    finally:
        await conn.close()
    await asyncio.wait_for(heard, 5.0)


async def settle(node: Node) -> None:
    """Until the node has heard every change committed so far. A seeded node's own
    writes notify too, asynchronously: one arriving late would drop an entry a test
    counts hits on. Notifications arrive in commit order, so once a later one is
    heard, all are."""
    await announce(node, "88.118.2/SETTLED")


NOTIFY_TRIGGERS = ("handles_notify_insert", "handles_notify_update", "handles_notify_delete")


@asynccontextmanager
async def notifications_off(dsn: str) -> AsyncIterator[None]:
    """No write notifies while inside (migration 0003's triggers disabled): a node then
    learns of its own writes only from its write path, as it must before it
    acknowledges them; a notification racing the next request cannot hide a miss."""
    conn = await asyncpg.connect(dsn)
    try:
        for trigger in NOTIFY_TRIGGERS:
            await conn.execute(
                f"ALTER TABLE handles DISABLE TRIGGER {trigger}"
            )  # our names, not input
        yield
    finally:
        for trigger in NOTIFY_TRIGGERS:
            await conn.execute(f"ALTER TABLE handles ENABLE TRIGGER {trigger}")
        await conn.close()


async def udp_exchange(node: Node, data: bytes) -> Message:
    assert node.handle_port
    peer: UdpPeer = await udp_peer("127.0.0.1", node.handle_port)
    try:
        for datagram in fragment_encoded(data):
            peer.send(datagram)
        datagrams = await peer.recv_message()
    finally:
        peer.transport.close()
    return decode(datagrams[0][:20] + b"".join(d[20:] for d in datagrams))


PRIVATE = "88.118.2/PRIVATE-NOTE"  # one public URL, one value only admins read


async def private_record(api: Api) -> None:
    """Write PRIVATE as the silk mill (HTTP Basic, the demo's admin secret)."""
    values = [
        {"index": 1, "type": "URL", "data": {"format": "string", "value": "https://example.com"}},
        {
            "index": 2,
            "type": "QUALITY_NOTE",
            "data": {"format": "string", "value": "batch 7 re-dyed"},
            "permissions": "1100",  # admin read and write; no public read
        },
    ]
    r = await api.put(f"/api/handles/{PRIVATE}", values, headers=admin_of(SILK_MILL))
    assert r.status in (200, 201), r.text


def pem_pubkey(key: PrivateKey, index: int = 300) -> dict[str, Any]:
    """HS_PUBKEY as the SDKs write it: the PEM text of the public key."""
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return {
        "index": index,
        "type": "HS_PUBKEY",
        "data": {"format": "string", "value": pem.decode()},
    }
