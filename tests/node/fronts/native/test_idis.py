"""The IDIS SDK dialect against a real node (docs/authentication.md, "IDIS SDK dialect"),
driven as CAICT's ID-SDK and Teleinfo's id-pointer-sdk drive a server: one long-lived
TCP connection without the keep-alive flag, envelope 2.3 suggesting 2.10, GET_SITE_INFO
first, then a login (opcode 2001 with an HS_PUBKEY written as PEM text, or 2000 with a
password) after which nothing on that connection is challenged again."""

from __future__ import annotations

import asyncio
import itertools
import struct
from collections.abc import AsyncIterator

import pytest

from node.app import Node
from node.demo.dataset import SILK_MILL, YARN_MAKER
from protocol.admin import HandleReply, HandleRequest, ValuesRequest
from protocol.authbodies import HS_PUBKEY, ChallengeAnswer
from protocol.bodies import (
    Body,
    ChallengeReply,
    ResolutionReply,
    ResolutionRequest,
    SiteInfoReply,
    SiteInfoRequest,
)
from protocol.challenge import make_pubkey_answer
from protocol.codes import OpCode, OpFlag, ResponseCode
from protocol.idis import LoginIdSystemRequest, LoginRequest
from protocol.message import (
    ENVELOPE_BYTES,
    HEADER_BYTES,
    LENGTH_OFFSET,
    Envelope,
    Header,
    Message,
    decode,
    encode,
)
from protocol.values import HandleValue
from tests.node.challenge_support import PrivateKey, new_key
from tests.node.conftest import read_message
from tests.node.http_support import Api, SteppedClock, admin_of
from tests.node.native_support import PRIVATE, pem_pubkey, private_record

USER = "88.118.2/ADMIN"
PUBLIC = "88.118.2/ROLL-2026-000123"
NO_FLAGS = OpFlag(0)


class SdkConnection:
    """One SDK connection: requests at 2.3 suggesting 2.10, its own session id (0 for
    ID-SDK, 10001 on for id-pointer-sdk), no keep-alive flag."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, session_id: int = 0
    ):
        self.reader, self.writer = reader, writer
        self.session_id = session_id
        self.ids = itertools.count(1)

    def message(self, opcode: OpCode, body: Body, flags: OpFlag = NO_FLAGS, **env: int) -> Message:
        envelope = Envelope(
            major=2,
            minor=3,
            suggested_major=2,
            suggested_minor=10,
            session_id=env.get("session_id", self.session_id),
            request_id=next(self.ids),
        )
        return Message(envelope, Header(opcode, flags=flags), body)

    def send(self, message: Message | bytes) -> None:
        self.writer.write(message if isinstance(message, bytes) else encode(message))

    async def recv(self) -> Message:
        return decode(await read_message(self.reader))

    async def exchange(self, message: Message | bytes) -> Message:
        self.send(message)
        await self.writer.drain()
        return await self.recv()

    async def login_id_system(self, key: PrivateKey, user: str = USER, index: int = 300) -> Message:
        """2001 → 402 (opcode 2001) → 200 signed over nonce‖digest → RC 1 (opcode 2001)."""
        challenge = await self.exchange(
            self.message(OpCode.LOGIN_ID_SYSTEM, LoginIdSystemRequest(user, index), OpFlag.RRDG)
        )
        assert (challenge.header.response_code, challenge.header.opcode) == (
            ResponseCode.AUTHENTICATION_NEEDED,
            OpCode.LOGIN_ID_SYSTEM,
        ), challenge
        assert isinstance(challenge.body, ChallengeReply) and challenge.digest is not None
        response = make_pubkey_answer(key, challenge.body.nonce, challenge.digest.digest)
        answer = self.message(
            OpCode.CHALLENGE_RESPONSE,
            ChallengeAnswer(HS_PUBKEY, user, index, response),
            session_id=challenge.envelope.session_id,
        )
        return await self.exchange(answer)


@pytest.fixture
async def sdk(http_node: Node) -> AsyncIterator[SdkConnection]:
    assert http_node.handle_port
    reader, writer = await asyncio.open_connection("127.0.0.1", http_node.handle_port)
    try:
        yield SdkConnection(reader, writer)
    finally:
        writer.close()
        await writer.wait_closed()


@pytest.fixture
async def key(api: Api) -> PrivateKey:
    """The enterprise's admin identity 300:88.118.2/ADMIN now holds an EC key, as PEM
    text; and a record with a value only admins may read exists."""
    await private_record(api)
    ec_key = new_key("ec")
    r = await api.put(
        f"/api/handles/{USER}?index=300", [pem_pubkey(ec_key)], headers=admin_of(SILK_MILL)
    )
    assert r.status == 200, r.text
    return ec_key


def _body_of(request: bytes) -> bytes:
    return request[ENVELOPE_BYTES + HEADER_BYTES : -4]  # no credential: its length is 0


def _with_body_bytes(request: bytes, body: bytes) -> bytes:
    """``request`` with ``body`` in place of its own, both lengths fixed to match."""
    head = bytearray(request[: ENVELOPE_BYTES + HEADER_BYTES])
    struct.pack_into(">I", head, LENGTH_OFFSET, HEADER_BYTES + len(body) + 4)
    struct.pack_into(">I", head, ENVELOPE_BYTES + HEADER_BYTES - 4, len(body))
    return bytes(head) + body + bytes(4)


def resolution(handle: str) -> ResolutionRequest:
    return ResolutionRequest(handle)


def types_of(reply: Message) -> list[str]:
    assert reply.header.response_code == ResponseCode.SUCCESS, reply
    assert isinstance(reply.body, ResolutionReply)
    return [v.type for v in reply.body.values if v.type != "HS_SIGNATURE"]  # the node signs


async def test_login_then_1000_pipelined_resolutions_and_admin_without_challenge(
    http_node: Node, sdk: SdkConnection, key: PrivateKey
) -> None:
    site = await sdk.exchange(sdk.message(OpCode.GET_SITE_INFO, SiteInfoRequest()))
    assert isinstance(site.body, SiteInfoReply)
    # Before the login, the value only admins read is challenged (as the reference does).
    before = await sdk.exchange(sdk.message(OpCode.RESOLUTION, resolution(PRIVATE)))
    assert before.header.response_code == ResponseCode.AUTHENTICATION_NEEDED
    ok = await sdk.login_id_system(key)
    assert (ok.header.response_code, ok.header.opcode) == (
        ResponseCode.SUCCESS,
        OpCode.LOGIN_ID_SYSTEM,
    )

    # 1,000 resolutions written back to back, read as they come (both at once: a client
    # that wrote everything first would stall on a full socket, as a real one would).
    requests = [sdk.message(OpCode.RESOLUTION, resolution(PRIVATE)) for _ in range(1000)]

    async def write_all() -> None:
        for request in requests:
            sdk.send(request)
            await sdk.writer.drain()

    writer = asyncio.create_task(write_all())
    replies = [await sdk.recv() for _ in requests]
    await writer
    assert [r.request_id for r in replies] == [r.request_id for r in requests]
    assert all(types_of(r) == ["URL", "QUALITY_NOTE"] for r in replies)

    # Administration on the same connection, unchallenged: create, add, list, delete.
    handle = "88.118.2/IDIS-NEW-1"
    url = HandleValue(1, "URL", b"https://example.com/idis")
    created = await sdk.exchange(sdk.message(OpCode.CREATE_HANDLE, ValuesRequest(handle, (url,))))
    assert (created.header.response_code, created.body) == (
        ResponseCode.SUCCESS,
        HandleReply(handle),
    )
    added = await sdk.exchange(
        sdk.message(OpCode.ADD_VALUE, ValuesRequest(handle, (HandleValue(2, "EMAIL", b"qa@x"),)))
    )
    assert added.header.response_code == ResponseCode.SUCCESS
    got = await sdk.exchange(sdk.message(OpCode.RESOLUTION, resolution(handle)))
    assert types_of(got)[:2] == ["URL", "EMAIL"]  # + the node's signature
    deleted = await sdk.exchange(sdk.message(OpCode.DELETE_HANDLE, HandleRequest(handle)))
    assert deleted.header.response_code == ResponseCode.SUCCESS
    # Not one challenge after the login.
    assert (
        http_node.metrics.registry.get_sample_value(
            "idnode_requests_total", {"front": "tcp", "op": "resolution", "rc": "402"}
        )
        == 1
    )


async def test_password_login_and_client_session_ids(
    http_node: Node, sdk: SdkConnection, key: PrivateKey
) -> None:
    """Opcode 2000 (the password in the type-list slot), with id-pointer-sdk's own
    session ids from 10001 on every request; replies carry them back."""
    sdk.session_id = 10001
    wrong = await sdk.exchange(sdk.message(OpCode.LOGIN, LoginRequest("88.118/ADMIN", "guess")))
    assert wrong.header.response_code == ResponseCode.AUTHENTICATION_FAILED
    assert "guess" not in repr(wrong)
    ok = await sdk.exchange(
        sdk.message(OpCode.LOGIN, LoginRequest("88.118.3/ADMIN", YARN_MAKER.admin_secret))
    )
    assert (ok.header.response_code, ok.envelope.session_id) == (ResponseCode.SUCCESS, 10001)
    sdk.session_id = 10002
    handle = "88.118.3/IDIS-PW-1"
    created = await sdk.exchange(
        sdk.message(
            OpCode.CREATE_HANDLE,
            ValuesRequest(handle, (HandleValue(1, "URL", b"https://example.com/pw"),)),
        )
    )
    assert (created.header.response_code, created.envelope.session_id) == (
        ResponseCode.SUCCESS,
        10002,
    )
    # Logged in as the yarn maker: the silk mill's handles stay out of reach (RC 400).
    other = await sdk.exchange(
        sdk.message(OpCode.ADD_VALUE, ValuesRequest(PRIVATE, (HandleValue(9, "EMAIL", b"x@y"),)))
    )
    assert other.header.response_code == ResponseCode.INVALID_ADMIN
    # ...and the silk mill's admin-only value is not theirs to read.
    got = await sdk.exchange(sdk.message(OpCode.RESOLUTION, resolution(PRIVATE)))
    assert got.header.response_code != ResponseCode.SUCCESS or types_of(got) == ["URL"]


async def test_a_login_belongs_to_its_connection(
    http_node: Node, sdk: SdkConnection, key: PrivateKey
) -> None:
    assert (await sdk.login_id_system(key)).header.response_code == ResponseCode.SUCCESS
    assert http_node.handle_port
    reader, writer = await asyncio.open_connection("127.0.0.1", http_node.handle_port)
    try:
        other = SdkConnection(reader, writer)
        reply = await other.exchange(other.message(OpCode.RESOLUTION, resolution(PRIVATE)))
        assert reply.header.response_code == ResponseCode.AUTHENTICATION_NEEDED
    finally:
        writer.close()
        await writer.wait_closed()
    # A second 2001 on the logged-in connection succeeds at once, unchallenged.
    again = await sdk.exchange(sdk.message(OpCode.LOGIN_ID_SYSTEM, LoginIdSystemRequest(USER, 300)))
    assert (again.header.response_code, again.header.opcode) == (
        ResponseCode.SUCCESS,
        OpCode.LOGIN_ID_SYSTEM,
    )


async def test_an_expired_login_gets_407_and_logs_in_again(
    http_node: Node, sdk: SdkConnection, key: PrivateKey
) -> None:
    clock = http_node.monotonic
    assert isinstance(clock, SteppedClock)
    assert (await sdk.login_id_system(key)).header.response_code == ResponseCode.SUCCESS
    clock.advance(http_node.settings.native_login_lifetime_s + 1)
    expired = await sdk.exchange(sdk.message(OpCode.RESOLUTION, resolution(PRIVATE)))
    assert expired.header.response_code == ResponseCode.LOGIN_AGAIN
    assert (await sdk.login_id_system(key)).header.response_code == ResponseCode.SUCCESS
    assert types_of(await sdk.exchange(sdk.message(OpCode.RESOLUTION, resolution(PRIVATE)))) == [
        "URL",
        "QUALITY_NOTE",
    ]


async def test_id_pointer_trailing_field_is_accepted_and_counted(
    http_node: Node, sdk: SdkConnection
) -> None:
    """id-pointer-sdk appends 4 bytes after the type list: the reference ignores them.
    A body cut short is still refused."""
    request = encode(sdk.message(OpCode.RESOLUTION, resolution(PUBLIC)))
    extended = _with_body_bytes(request, _body_of(request) + b"\0\0\0\x01")
    assert types_of(await sdk.exchange(extended))
    counted = http_node.metrics.registry.get_sample_value(
        "idnode_trailing_bytes_requests_total", {"front": "tcp"}
    )
    assert counted == 1
    cut = _with_body_bytes(request, _body_of(request)[:-2])
    assert (await sdk.exchange(cut)).header.response_code == ResponseCode.PROTOCOL_ERROR


async def test_heartbeat_is_answered(sdk: SdkConnection) -> None:
    """The SDKs keep their connection alive by resolving the handle "0"."""
    for _ in range(3):
        reply = await sdk.exchange(sdk.message(OpCode.RESOLUTION, resolution("0")))
        assert reply.header.opcode == OpCode.RESOLUTION
        # "0" has no prefix/suffix: RC 102, a reply like any other; the connection lives on.
        assert reply.header.response_code == ResponseCode.INVALID_HANDLE
    assert types_of(await sdk.exchange(sdk.message(OpCode.RESOLUTION, resolution(PUBLIC))))
