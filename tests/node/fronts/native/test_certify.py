"""Certified (CERT) replies through the native handler (node.fronts.native.certify):
answers signed and verifiable at every version, errors to unauthenticated callers
unsigned, signatures rationed per source network (RC 3 past it) and bounded in flight,
and kept signatures reused without taking from the ration.

Each test builds a ``NativeHandler`` over a real seeded node's resolver, cache, site and
authentication, with its own settings and a clock the test moves, and calls ``handle``
as the UDP front does.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from node.app import Node
from node.auth import Identity
from node.client.native import DEFAULT_FLAGS
from node.fronts.native.handler import NativeHandler
from node.fronts.native.peer import Connection, Peer
from protocol.admin import HandleRequest
from protocol.bodies import RawBody
from protocol.codes import OpCode, OpFlag, ResponseCode
from protocol.keys import decode_public_key
from protocol.message import Envelope, Header, Message, decode, encode
from protocol.msgsign import verify_message
from tests.node.conftest import CLOCK
from tests.node.http_support import SteppedClock
from tests.node.native_support import ABC, request_bytes

CERT = DEFAULT_FLAGS | OpFlag.CERT
FLOODER = Peer("udp", ("127.0.0.2", 40000))
NEIGHBOUR = Peer("udp", ("127.0.0.9", 40000))  # the same /24 as FLOODER
ELSEWHERE = Peer("udp", ("127.0.1.2", 40000))  # another /24


def make_handler(node: Node, clock: SteppedClock, **kwargs: Any) -> NativeHandler:
    assert node.resolver is not None and node.site is not None and node.handler is not None
    settings: dict[str, Any] = {"rate_limit_exempt_networks": ()} | kwargs
    handler = NativeHandler(
        node.resolver,
        node.site,
        node.metrics,
        clock=lambda: CLOCK,
        cache=node.cache,
        auth=node.handler.auth,
        authorizer=node.authorizer,
        monotonic=clock,
        **settings,
    )
    return handler


@pytest.fixture
def clock() -> SteppedClock:
    return SteppedClock()


def outcome(node: Node, name: str) -> float:
    value = node.metrics.registry.get_sample_value(
        "idnode_native_signed_replies_total", {"outcome": name}
    )
    return value or 0.0


def cert_request(
    handle: str = ABC, *, request_id: int, version: tuple[int, int] = (2, 10)
) -> bytes:
    env = Envelope(
        *version, suggested_major=version[0], suggested_minor=version[1], request_id=request_id
    )
    return request_bytes(handle, flags=CERT, envelope=env)


async def ask(handler: NativeHandler, data: bytes, peer: Peer = FLOODER) -> Message:
    reply = await handler.handle(data, peer)
    assert isinstance(reply, bytes)
    return decode(reply)


def signed(reply: Message, node: Node) -> bool:
    assert node.site is not None
    key = decode_public_key(node.site.info.servers[0].public_key)
    return (
        reply.credential is not None
        and OpFlag.CERT in reply.header.flags
        and verify_message(reply, key)
    )


def unsigned(reply: Message) -> bool:
    return reply.credential is None and OpFlag.CERT not in reply.header.flags


@pytest.mark.parametrize("version", [(2, 1), (2, 5), (2, 7), (2, 10)])
async def test_answers_are_signed_and_verify_at_each_version(
    native_node: Node, clock: SteppedClock, version: tuple[int, int]
) -> None:
    handler = make_handler(native_node, clock)
    try:
        found = await ask(handler, cert_request(request_id=7, version=version))
        assert found.header.response_code == ResponseCode.SUCCESS
        assert found.envelope.version == version and found.request_id == 7
        assert signed(found, native_node)
        # "Not found" answers the question too: signed (certify's docstring says why).
        missing = await ask(handler, cert_request("88.118.2/NOPE", request_id=8, version=version))
        assert missing.header.response_code == ResponseCode.HANDLE_NOT_FOUND
        assert signed(missing, native_node)
    finally:
        handler.close()


async def test_errors_to_unauthenticated_callers_are_unsigned(
    native_node: Node, clock: SteppedClock
) -> None:
    handler = make_handler(native_node, clock)
    try:
        env = Envelope(request_id=11)
        unsupported = encode(Message(env, Header(4242, flags=CERT), RawBody(b"\0\0\0\x0588.118")))
        reply = await ask(handler, unsupported)
        assert reply.header.response_code == ResponseCode.OPERATION_NOT_SUPPORTED
        assert reply.request_id == 11 and unsigned(reply)
        # A request whose body cannot be read: RC 4, unsigned.
        whole = cert_request(request_id=12)
        truncated = bytearray(whole[:-6])
        truncated[16:20] = (len(truncated) - 20).to_bytes(4, "big")
        reply = await ask(handler, bytes(truncated))
        assert reply.header.response_code == ResponseCode.PROTOCOL_ERROR
        assert reply.request_id == 12 and unsigned(reply)
        # Administration over UDP is refused: RC 5, unsigned.
        admin = encode(
            Message(
                Envelope(request_id=13),
                Header(OpCode.DELETE_HANDLE, flags=CERT),
                HandleRequest(ABC),
            )
        )
        reply = await ask(handler, admin)
        assert reply.header.response_code == ResponseCode.OPERATION_NOT_SUPPORTED
        assert reply.request_id == 13 and unsigned(reply)
        assert outcome(native_node, "unsigned") == 3
        assert outcome(native_node, "signed") == 0
    finally:
        handler.close()


async def test_authenticated_callers_get_their_errors_signed(
    native_node: Node, clock: SteppedClock
) -> None:
    handler = make_handler(native_node, clock, signed_replies_per_s=1)
    conn = Connection()
    conn.log_in(Identity("88.118/ADMIN", 300, "native"), time.monotonic(), 3600)
    peer = Peer("tcp", ("127.0.0.2", 40000), conn)
    try:
        for rid in (21, 22, 23):  # past the ration: logged-in callers are not rationed
            env = Envelope(request_id=rid)
            reply = await ask(
                handler,
                encode(Message(env, Header(4242, flags=CERT), RawBody(b"\0\0\0\x0588.118"))),
                peer,
            )
            assert reply.header.response_code == ResponseCode.OPERATION_NOT_SUPPORTED
            assert signed(reply, native_node)
    finally:
        handler.close()


async def test_over_the_ration_is_rc3_unsigned_with_the_request_id(
    native_node: Node, clock: SteppedClock
) -> None:
    handler = make_handler(native_node, clock, signed_replies_per_s=2)
    try:
        for rid in (1, 2):
            assert signed(await ask(handler, cert_request(request_id=rid)), native_node)
        busy = await ask(handler, cert_request(request_id=3), NEIGHBOUR)  # same /24
        assert busy.header.response_code == ResponseCode.SERVER_TOO_BUSY
        assert busy.request_id == 3 and unsigned(busy)
        assert outcome(native_node, "rate_limited") == 1
        labels = {"front": "udp", "op": "resolution", "rc": "3"}
        assert native_node.metrics.registry.get_sample_value("idnode_requests_total", labels) == 1
        # Another network has its own ration; this one refills with the clock.
        assert signed(await ask(handler, cert_request(request_id=4), ELSEWHERE), native_node)
        clock.advance(0.5)
        assert signed(await ask(handler, cert_request(request_id=5)), native_node)
        busy = await ask(handler, cert_request(request_id=6))
        assert busy.header.response_code == ResponseCode.SERVER_TOO_BUSY
    finally:
        handler.close()


async def test_exempt_networks_are_not_rationed(native_node: Node, clock: SteppedClock) -> None:
    handler = make_handler(
        native_node, clock, signed_replies_per_s=1, rate_limit_exempt_networks=("127.0.0.0/8",)
    )
    try:
        for rid in range(1, 5):
            assert signed(await ask(handler, cert_request(request_id=rid)), native_node)
        assert outcome(native_node, "rate_limited") == 0
    finally:
        handler.close()


async def test_reused_signatures_take_nothing_from_the_ration(
    native_node: Node, clock: SteppedClock
) -> None:
    handler = make_handler(native_node, clock, signed_replies_per_s=1)
    try:
        for rid in (1, 2, 3):  # below 2.7 the signed bytes do not hold the request id
            reply = await ask(handler, cert_request(request_id=rid, version=(2, 5)))
            assert reply.request_id == rid and signed(reply, native_node)
        assert (outcome(native_node, "signed"), outcome(native_node, "reused")) == (1, 2)
    finally:
        handler.close()


async def test_signing_queue_is_bounded(native_node: Node, clock: SteppedClock) -> None:
    handler = make_handler(native_node, clock, sign_queue_max=1)
    try:
        # Both are past their first await before the first signature can be collected.
        first, second = await asyncio.gather(
            ask(handler, cert_request(request_id=1)),
            ask(handler, cert_request(request_id=2), ELSEWHERE),
        )
        assert signed(first, native_node)
        assert second.header.response_code == ResponseCode.SERVER_TOO_BUSY
        assert second.request_id == 2 and unsigned(second)
        assert outcome(native_node, "queue_full") == 1
        assert handler.certifier.pending == 0
    finally:
        handler.close()


async def test_over_the_ration_is_refused_before_any_lookup(
    native_node: Node, clock: SteppedClock
) -> None:
    """From 2.7 no signature can be reused, so a certified request from a network over
    its ration is refused before resolving: a flood of them costs no registry reads."""
    handler = make_handler(native_node, clock, signed_replies_per_s=1)
    assert native_node.cache is not None
    try:
        assert signed(await ask(handler, cert_request(request_id=1)), native_node)
        reads = native_node.cache.stats.reads
        for rid in range(2, 12):
            missing = f"{ABC}-NOT-THERE-{rid}"
            busy = await ask(handler, cert_request(missing, request_id=rid), NEIGHBOUR)
            assert busy.header.response_code == ResponseCode.SERVER_TOO_BUSY
            assert busy.request_id == rid and unsigned(busy)
        assert native_node.cache.stats.reads == reads
        assert outcome(native_node, "rate_limited") == 10
        # Below 2.7 a kept signature may still serve it: those are resolved as before.
        old = await ask(
            handler, cert_request(f"{ABC}-NOT-THERE-OLD", request_id=20, version=(2, 5))
        )
        assert native_node.cache.stats.reads == reads + 1
        assert old.header.response_code == ResponseCode.SERVER_TOO_BUSY
    finally:
        handler.close()
