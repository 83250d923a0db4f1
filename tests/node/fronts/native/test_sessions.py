"""Native sessions against a real node, driven as the reference client drives them: its
own SESSION_SETUP from the admin capture (#7, GenericBatch), whose DH private value the
capture's key log holds, so the test derives the session key exactly as the reference
client did and MACs the capture's admin operations with it."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest

from node.app import Node
from node.demo.seed import seed_records
from protocol.admin import HandleReply, HandleRequest
from protocol.authbodies import ChallengeAnswer
from protocol.bodies import ChallengeReply, ErrorReply
from protocol.challenge import SeckeyForm, make_seckey_answer
from protocol.codes import OpCode, OpFlag, ResponseCode
from protocol.keys import decode_public_key
from protocol.message import (
    ENVELOPE_BYTES,
    HEADER_BYTES,
    EnvelopeFlag,
    Header,
    Message,
    decode,
    encode,
)
from protocol.msgsign import verify_message
from protocol.session import (
    SessionMode,
    SessionSetupReply,
    SessionSetupRequest,
    decrypt_message,
    dh_session_key,
    encrypt_message,
    mac_message,
    parse_dh_reply_data,
)
from tests.node.conftest import SEED_TIME, StartNode, tcp_exchange
from tests.node.native_support import udp_exchange
from tests.protocol.admin_golden import GROUP2_P, admin_case, captured_messages, logged_private_x

SECRET = b"secret123"
# Where capture #7's requests sit (the replies in between).
CREATE, ANSWER, ADD, MODIFY, REMOVE, DELETE = 2, 4, 6, 8, 10, 12


@pytest.fixture
async def node(start_node: StartNode) -> Node:
    """The capture's identity, 300:88.118/ADMIN, is this node's server admin."""
    return await start_node(server_admins="300:88.118/ADMIN")


class Reference:
    """The reference client of capture #7, talking to our node: its requests, its DH
    key, re-MACed in the session our node gave it."""

    def __init__(self, node: Node, case: int = 7):
        assert node.handle_port
        self.node, self.port = node, node.handle_port
        self.captured = captured_messages(case)
        self.private_x = logged_private_x(admin_case(case))
        assert self.private_x is not None
        self.session_id = 0
        self.key = b""

    async def setup(self) -> Message:
        reply = await udp_exchange(self.node, self.captured[0].wire)
        assert reply.header.response_code == ResponseCode.SUCCESS, reply
        assert isinstance(reply.body, SessionSetupReply)
        _, server = parse_dh_reply_data(reply.body.data)
        self.session_id = reply.envelope.session_id
        self.key = dh_session_key(self.private_x, server.y, GROUP2_P)  # type: ignore[arg-type]
        return reply

    def op(self, at: int, counter: int | None, **changes: object) -> Message:
        """Captured request ``at`` in our session, MACed with ``counter`` (None: no MAC)."""
        message = self.captured[at].message
        fields = {"session_id": self.session_id, **changes}
        env = replace(message.envelope, **fields)  # type: ignore[arg-type]
        message = replace(message, envelope=env, credential=None)
        return mac_message(message, self.key, counter) if counter is not None else message

    async def send(self, message: Message) -> Message:
        return decode(await tcp_exchange("127.0.0.1", self.port, encode(message)))

    def answer(
        self,
        challenge: Message,
        secret: bytes = SECRET,
        form: SeckeyForm = SeckeyForm.PBKDF2_HMAC_SHA1,
    ) -> Message:
        assert isinstance(challenge.body, ChallengeReply) and challenge.digest is not None
        template = self.captured[ANSWER].message  # the capture's opcode-200 answer
        assert isinstance(template.body, ChallengeAnswer)
        response = make_seckey_answer(secret, challenge.body.nonce, challenge.digest.digest, form)
        env = replace(template.envelope, session_id=challenge.envelope.session_id)
        return replace(
            template, envelope=env, body=replace(template.body, response=response), credential=None
        )


async def test_the_batch_tools_session(node: Node) -> None:
    ref = Reference(node)
    setup = await ref.setup()
    # Signed with the HS_SITE key (the reference client checks it), same group back.
    assert node.site is not None
    assert verify_message(setup, decode_public_key(node.site.info.servers[0].public_key))  # type: ignore[arg-type]
    assert ref.session_id not in (0, 12)
    # CREATE (MACed, counter 1) is challenged; the answer authenticates the session.
    challenge = await ref.send(ref.op(CREATE, 1))
    assert (challenge.header.response_code, challenge.envelope.session_id) == (
        ResponseCode.AUTHENTICATION_NEEDED,
        ref.session_id,
    )
    created = await ref.send(ref.answer(challenge))
    assert (created.header.response_code, created.header.opcode) == (
        ResponseCode.SUCCESS,
        OpCode.CREATE_HANDLE,
    )
    assert created.body == HandleReply("88.118.2/BATCH-1")
    # ADD, MODIFY, REMOVE, DELETE: MACed only, never challenged again.
    for at, counter, op in (
        (ADD, 2, OpCode.ADD_VALUE),
        (MODIFY, 3, OpCode.MODIFY_VALUE),
        (REMOVE, 4, OpCode.REMOVE_VALUE),
        (DELETE, 5, OpCode.DELETE_HANDLE),
    ):
        reply = await ref.send(ref.op(at, counter))
        assert (reply.header.response_code, reply.header.opcode) == (ResponseCode.SUCCESS, op), (
            reply
        )


async def test_mac_counters_and_session_errors(node: Node) -> None:
    """Admin capture #15: replayed counter 505, altered counter 502, no MAC 404,
    unknown session 500; and counter 0, which the reference never checks (#21), is
    refused too."""
    ref = Reference(node)
    await ref.setup()
    challenge = await ref.send(ref.op(CREATE, 1))
    assert (await ref.send(ref.answer(challenge))).header.response_code == ResponseCode.SUCCESS
    modify = ref.op(MODIFY, 2)
    assert (await ref.send(modify)).header.response_code == ResponseCode.SUCCESS
    assert (await ref.send(modify)).header.response_code == ResponseCode.SESSION_INVALID  # replay
    assert modify.credential is not None
    altered = replace(modify, credential=replace(modify.credential, signer_index=102))
    assert (await ref.send(altered)).header.response_code == ResponseCode.SESSION_KEY_INVALID
    assert (
        await ref.send(ref.op(MODIFY, None))
    ).header.response_code == ResponseCode.INVALID_CREDENTIAL
    wrong_key = mac_message(replace(ref.op(MODIFY, None), credential=None), bytes(32), 3)
    assert (await ref.send(wrong_key)).header.response_code == ResponseCode.SESSION_KEY_INVALID
    elsewhere = mac_message(ref.op(MODIFY, None, session_id=1001), ref.key, 4)
    assert (await ref.send(elsewhere)).header.response_code == ResponseCode.SESSION_TIMEOUT
    zero = ref.op(MODIFY, 0)
    assert (await ref.send(zero)).header.response_code == ResponseCode.SESSION_INVALID
    assert (
        await ref.send(ref.op(MODIFY, 5))
    ).header.response_code == ResponseCode.SUCCESS  # still fine
    # SESSION_TERMINATE (capture #8's body "/"), MACed; then the session is gone.
    modify_message = ref.op(MODIFY, None)
    terminate = mac_message(
        replace(modify_message, header=Header(OpCode.SESSION_TERMINATE), body=HandleRequest("/")),
        ref.key,
        6,
    )
    assert (await ref.send(terminate)).header.response_code == ResponseCode.SUCCESS
    assert (await ref.send(ref.op(MODIFY, 7))).header.response_code == ResponseCode.SESSION_TIMEOUT


async def test_encrypted_requests_get_encrypted_replies(node: Node) -> None:
    """Admin capture #19: ENCR set, the payload AES-CBC under the session key; the reply
    comes back encrypted, and says so."""
    ref = Reference(node)
    await ref.setup()
    challenge = await ref.send(ref.op(CREATE, 1))
    assert (await ref.send(ref.answer(challenge))).header.response_code == ResponseCode.SUCCESS
    modify = ref.op(MODIFY, 2)
    modify = mac_message(
        replace(
            modify,
            header=replace(modify.header, flags=modify.header.flags | OpFlag.ENCR),
            credential=None,
        ),
        ref.key,
        2,
    )
    sealed = encrypt_message(encode(modify), ref.key, os.urandom(16))
    raw = await tcp_exchange("127.0.0.1", ref.port, sealed)
    assert raw[2] & EnvelopeFlag.ENCRYPTED
    reply = decode(decrypt_message(raw, ref.key))
    assert reply.header.response_code == ResponseCode.SUCCESS and OpFlag.ENCR in reply.header.flags
    # Garbage under the ENCRYPTED flag, or the wrong key: refused as a bad MAC would be,
    # whether the padding came out bad or (one time in 256) good: the right key over
    # bytes that are no message is that second case, every time.
    wrong_key = encrypt_message(encode(ref.op(MODIFY, 3)), bytes(32), os.urandom(16))
    header = encode(ref.op(MODIFY, 3))[: ENVELOPE_BYTES + HEADER_BYTES]
    garbage = encrypt_message(header + b"\xff" * 40, ref.key, os.urandom(16))
    for bad in (wrong_key, garbage):
        refused = decode(await tcp_exchange("127.0.0.1", ref.port, bad))
        assert refused.header.response_code == ResponseCode.SESSION_KEY_INVALID
        assert refused.body == ErrorReply("session authentication failed")


@pytest.mark.parametrize("mode", [m for m in SessionMode if m != SessionMode.DIFFIE_HELLMAN])
async def test_other_session_modes_are_refused_clearly(node: Node, mode: SessionMode) -> None:
    ref = Reference(node)
    setup = ref.captured[0].message
    key = b"\0" * 8 if mode is SessionMode.CIPHER_CLIENT else None
    exchange = ("88.118/ADMIN", 300) if mode is SessionMode.CIPHER_HANDLE else (None, None)
    body = SessionSetupRequest(mode, 60, "88.118/ADMIN", 300, key, *exchange)
    reply = await udp_exchange(node, encode(replace(setup, body=body)))
    assert reply.header.response_code == ResponseCode.OPERATION_NOT_SUPPORTED


async def test_a_2_6_session_uses_the_legacy_mac(node: Node) -> None:
    """Admin capture #20: a session set up at 2.6 suggesting 2.6 is a 2.6 session; its
    HS_MAC is the 2.5/2.6 form (hash name SHA1, the reference's buffer), the answer the
    0x02 form and MACed too, then a MODIFY checked by MAC alone."""
    assert node.db is not None
    cap = [{"index": 1, "type": "URL", "data": "https://example.com/cap-1"}]
    await seed_records(
        node.db.registry, [("88.118.2/CAP-1", cap)], actor="test", now=SEED_TIME, writes=node.writes
    )
    ref = Reference(node, case=20)
    setup = await ref.setup()
    assert setup.envelope.version == (2, 6)
    challenge = await ref.send(ref.op(CREATE, 1))  # capture #20's first request: MODIFY
    assert challenge.header.response_code == ResponseCode.AUTHENTICATION_NEEDED
    answer = mac_message(ref.answer(challenge, form=SeckeyForm.SHA1), ref.key, 2)
    assert answer.credential is not None and answer.credential.type == "HS_MAC"
    reply = await ref.send(answer)
    assert (reply.header.response_code, reply.header.opcode) == (
        ResponseCode.SUCCESS,
        OpCode.MODIFY_VALUE,
    )
    again = await ref.send(ref.op(ADD, 3))  # the second MODIFY
    assert again.header.response_code == ResponseCode.SUCCESS
    # Even the legacy form, which binds no counter, does not make a replay pass.
    assert (await ref.send(ref.op(ADD, 3))).header.response_code == ResponseCode.SESSION_INVALID
