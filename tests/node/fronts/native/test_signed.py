"""Certified native replies: signed with the HS_SITE key, verified by the client, and a
reply altered in transit refused."""

from __future__ import annotations

import asyncio

import pytest

from node.client.native import ClientError, NativeClient
from protocol.codes import OpFlag, ResponseCode
from protocol.keys import decode_public_key
from protocol.msgsign import verify_message


def site_public_key(node):  # type: ignore[no-untyped-def]
    return decode_public_key(node.site.info.servers[0].public_key)


async def test_certified_reply_verifies_over_udp_and_tcp(native_node) -> None:  # type: ignore[no-untyped-def]
    key = site_public_key(native_node)
    for udp in (True, False):
        client = NativeClient("127.0.0.1", native_node.handle_port, udp=udp, verify_key=key)
        reply = await client.resolve("88.118.2/ABC123")
        assert reply.header.response_code == ResponseCode.SUCCESS
        assert OpFlag.CERT in reply.header.flags
        assert reply.credential is not None and reply.credential.type == "HS_SIGNED"
        assert verify_message(reply, key)
    # Errors are certified too: a signed "not found" cannot be forged into a record.
    client = NativeClient("127.0.0.1", native_node.handle_port, verify_key=key)
    assert (
        await client.resolve("88.118.2/NOPE")
    ).header.response_code == ResponseCode.HANDLE_NOT_FOUND


async def test_uncertified_requests_get_no_credential(native_node) -> None:  # type: ignore[no-untyped-def]
    reply = await NativeClient("127.0.0.1", native_node.handle_port).resolve("88.118.2/ABC123")
    assert reply.credential is None and OpFlag.CERT not in reply.header.flags


class _Tamperer(asyncio.DatagramProtocol):
    """A UDP relay in front of the node that flips one byte of the first value's data."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.client: tuple[str, int] | None = None
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:  # type: ignore[no-untyped-def]
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        if addr == self.target:
            altered = bytearray(data)
            pos = altered.find(b"https://")  # inside a value's data, covered by the signature
            if pos >= 0:
                altered[pos + 8] ^= 0x01
            self.transport.sendto(bytes(altered), self.client)
        else:
            self.client = addr
            self.transport.sendto(data, self.target)


async def test_reply_altered_in_transit_is_refused(native_node) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    target = ("127.0.0.1", native_node.handle_port)
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _Tamperer(target), local_addr=("127.0.0.1", 0)
    )
    try:
        port = transport.get_extra_info("sockname")[1]
        key = site_public_key(native_node)
        # UDP only through the relay: the TCP fallback would reach no one on this port.
        client = NativeClient("127.0.0.1", port, verify_key=key, timeout_s=2.0)
        with pytest.raises(ClientError, match="not signed by the expected site key"):
            await client.resolve("88.118.2/ABC123")
        # Without verification the altered reply is accepted as is: the check matters.
        plain = await NativeClient("127.0.0.1", port, timeout_s=2.0).resolve(
            "88.118.2/ABC123", flags=OpFlag.CERT | OpFlag.RECU
        )
        assert plain.credential is not None and not verify_message(plain, key)
    finally:
        transport.close()
