"""Many misses at once, native and HTTP, on a real node: every answer is the one the
decoding path gives for its own record, byte for byte over the native front.

The node reads its registry in batches (registry.readbatch) and answers anonymous
native resolutions from the stored wire form (resolver.WireFound, protocol.wirescan);
the expected replies here are built the slow way, from the record decoded, filtered
(``select_values``, public read, the HS_SECKEY redaction) and encoded again.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from node.app import Node
from node.fronts.http.reply import cache_control
from node.secrets.vault import shown
from protocol.bodies import ErrorReply, ResolutionReply
from protocol.codes import OpFlag, ResponseCode, TTLType
from protocol.handle import parse_handle
from protocol.jsonvalues import values_to_json
from protocol.message import decode, encode
from protocol.negotiate import build_reply
from protocol.values import HandleValue, Reference, select_values
from tests.node.conftest import CLOCK, SEED_TIME, udp_peer
from tests.node.native_support import request_bytes

RECORDS = 40
ADMIN_ONLY = 0b1100
PUBLIC = 0b1110

# (indexes, types, PUBL): the request shapes asked of every record.
SHAPES: list[tuple[tuple[int, ...], tuple[str, ...], bool]] = [
    ((), (), True),
    ((), (), False),
    ((1, 7), (), True),
    ((), ("URL.",), True),
    ((), ("hs_seckey", "EMAIL"), True),
    ((300,), ("NOTHING",), True),
]


def _name(i: int) -> str:
    return f"88.118.2/Miss-{i:03d}"


def _values(i: int) -> list[HandleValue]:
    """Records unlike each other: secrets public or not, admin-only values, families of
    types, references, absolute TTLs, a non-ASCII type."""
    values = [HandleValue(1, "URL", f"https://example.com/m/{i}".encode())]
    if i % 2:
        values.append(HandleValue(2, "URL.ALT", b"https://mirror.example.com/", ttl=60))
    if i % 3 == 0:
        values.append(HandleValue(3, "EMAIL", b"ops@example.com", permissions=ADMIN_ONLY))
    if i % 4 == 1:
        secret_perms = PUBLIC if i % 8 == 1 else ADMIN_ONLY
        values.append(HandleValue(300, "HS_SECKEY", b"clear-secret", permissions=secret_perms))
    if i % 5 == 0:
        values.append(
            HandleValue(
                7,
                "缸号",
                b"D-2026-07",
                ttl=int(CLOCK) + 3600,
                ttl_type=TTLType.ABSOLUTE,
                references=(Reference("88.118.2/LOT-7", 1),),
            )
        )
    return values


def _expected_native(node: Node, request: bytes, stored: tuple[HandleValue, ...]) -> bytes | int:
    """The reply's bytes as the decoding path builds them, or 402 for a challenge."""
    message = decode(request)
    body = message.body
    public_only = OpFlag.PUBL in message.header.flags
    values = select_values(stored, body.indexes, body.types)  # type: ignore[union-attr]
    if public_only:
        values = [v for v in values if v.public_read]
    values = [shown(v) for v in values]
    if any(not v.public_read for v in values):
        return int(ResponseCode.AUTHENTICATION_NEEDED)
    assert node.site is not None
    if values:
        reply: Any = ResolutionReply(body.handle, tuple(values))  # type: ignore[union-attr]
        rc = ResponseCode.SUCCESS
    else:
        reply, rc = ErrorReply(), ResponseCode.VALUES_NOT_FOUND
    return encode(build_reply(message, rc, reply, now=CLOCK, site_serial=node.site.info.serial))


async def _native(node: Node, request: bytes) -> bytes:
    assert node.handle_port is not None
    peer = await udp_peer("127.0.0.1", node.handle_port)
    try:
        peer.send(request)
        datagrams = await peer.recv_message()
    finally:
        peer.transport.close()
    return datagrams[0][:20] + b"".join(d[20:] for d in datagrams)


async def _http(session: aiohttp.ClientSession, node: Node, name: str, query: str) -> Any:
    url = f"http://127.0.0.1:{node.http_port}/api/handles/{name}{query}"
    async with session.get(url) as resp:
        return resp.status, await resp.json(), resp.headers.get("Cache-Control")


async def test_concurrent_native_and_http_misses_answer_as_the_decoding_path(
    native_node: Node,
) -> None:
    node = native_node
    assert node.db is not None
    registry = node.db.registry
    stored: dict[str, tuple[HandleValue, ...]] = {}
    for i in range(RECORDS):
        put = await registry.put_handle(
            parse_handle(_name(i)), _values(i), actor="test:misses", now=SEED_TIME
        )
        stored[_name(i)] = put.record.values
    reads_before = registry.reads.stats.keys

    native_asks = [
        (name, request_bytes(name, idx, types, flags=OpFlag.RECU | (OpFlag.PUBL if publ else 0)))
        for name in stored
        for idx, types, publ in SHAPES
    ]
    http_asks = [(name, q) for name in stored for q in ("", "?index=1&index=7", "?type=URL.")]
    async with aiohttp.ClientSession() as session:
        answers = await asyncio.gather(
            *(_native(node, request) for _, request in native_asks),
            *(_http(session, node, name, q) for name, q in http_asks),
        )
    native_answers, http_answers = answers[: len(native_asks)], answers[len(native_asks) :]

    for (name, request), got in zip(native_asks, native_answers, strict=True):
        expected = _expected_native(node, request, stored[name])
        if isinstance(expected, int):
            assert decode(got).header.response_code == expected, name
        else:
            assert got == expected, (name, decode(request).body)

    for (name, q), (status, body, cc) in zip(http_asks, http_answers, strict=True):
        indexes = (1, 7) if "index" in q else ()
        types = ("URL.",) if "type" in q else ()
        public = [shown(v) for v in select_values(stored[name], indexes, types) if v.public_read]
        if public:
            assert status == 200, (name, q, body)
            assert body["values"] == values_to_json(public), (name, q)
            assert cc == cache_control(public, CLOCK, private=False), (name, q)
        else:
            assert body["responseCode"] == ResponseCode.VALUES_NOT_FOUND, (name, q, body)

    # Every record was read from the registry (the cache was cold for each), through the
    # batched read.
    assert registry.reads.stats.keys - reads_before >= RECORDS


def test_the_records_cover_what_the_wire_path_must_get_right() -> None:
    """Guard on the fixture data: secrets public and not, admin-only values, references,
    absolute TTLs and a non-ASCII type are all among the records."""
    everything = [v for i in range(RECORDS) for v in _values(i)]
    assert any(v.type == "HS_SECKEY" and v.public_read for v in everything)
    assert any(v.type == "HS_SECKEY" and not v.public_read for v in everything)
    assert any(not v.public_read and v.type != "HS_SECKEY" for v in everything)
    assert any(v.references for v in everything)
    assert any(v.ttl_type == TTLType.ABSOLUTE for v in everything)
