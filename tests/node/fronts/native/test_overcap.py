"""The small RC 2 that sends a UDP client to TCP (node.fronts.native.overcap), built
from a request's bytes without decoding its body: byte for byte what
``build_reply`` + ``encode`` make of the decoded request, for every version and flag
combination that changes a reply; nothing for what is not a whole plain request."""

from __future__ import annotations

import struct

import pytest

from node.fronts.native.overcap import (
    RATE_LIMITED,
    TOO_LARGE,
    largest_message,
    retry_over_tcp,
    wire_bytes,
)
from protocol.bodies import ErrorReply, ResolutionRequest, SiteInfoRequest
from protocol.codes import OpCode, OpFlag, ResponseCode
from protocol.fragment import fragment_encoded
from protocol.message import Credential, Envelope, EnvelopeFlag, Header, Message, decode, encode
from protocol.negotiate import build_reply

NOW = 1_795_500_000.7
FLAGS = OpFlag.RECU | OpFlag.CACR | OpFlag.PUBL

ENVELOPES = [
    Envelope(session_id=0, request_id=1),
    Envelope(2, 10, suggested_major=2, suggested_minor=10, session_id=9, request_id=2**31),
    Envelope(2, 5, suggested_major=2, suggested_minor=5, request_id=3),
    Envelope(2, 1, suggested_major=2, suggested_minor=1, request_id=4),  # SHA-1 digests
    Envelope(2, 0, suggested_major=2, suggested_minor=0, request_id=5),  # no digest
    Envelope(2, 11, suggested_major=0, suggested_minor=0, request_id=6),  # RFC 3652 style
    Envelope(5, 1, suggested_major=0, suggested_minor=0, request_id=7),  # the 5.x quirk
    Envelope(3, 0, suggested_major=3, suggested_minor=0, request_id=0xFFFFFFFF),
]


def requests() -> list[Message]:
    out = []
    for env in ENVELOPES:
        for flags in (OpFlag(0), FLAGS, FLAGS | OpFlag.RRDG, FLAGS | OpFlag.CERT | OpFlag.RRDG):
            header = Header(OpCode.RESOLUTION, flags=flags, recursion=3, expiration=1234)
            out.append(Message(env, header, ResolutionRequest("88.118.2/BIG40", (1,), ("URL",))))
    out.append(Message(ENVELOPES[0], Header(OpCode.GET_SITE_INFO, flags=FLAGS), SiteInfoRequest()))
    signed = Credential.make("HS_SIGNED", "SHA-256", b"s" * 64, signer_handle="0.NA/x")
    out.append(
        Message(
            ENVELOPES[1],
            Header(OpCode.RESOLUTION, flags=FLAGS | OpFlag.RRDG),
            ResolutionRequest("a/b"),
            credential=signed,
        )
    )
    return out


@pytest.mark.parametrize("request_message", requests())
@pytest.mark.parametrize("message", [TOO_LARGE, RATE_LIMITED])
def test_same_bytes_as_build_reply(request_message: Message, message: str) -> None:
    data = encode(request_message)
    expected = encode(
        build_reply(
            decode(data), ResponseCode.ERROR, ErrorReply(message), now=NOW, site_serial=0x1234
        )
    )
    assert retry_over_tcp(data, message, now=NOW, site_serial=0x1234) == expected
    assert retry_over_tcp(bytearray(data), message, now=NOW, site_serial=0x1234) == expected
    assert len(expected) < 140


def test_not_a_whole_plain_request_gets_nothing() -> None:
    data = encode(requests()[2])
    reply = encode(
        build_reply(decode(data), ResponseCode.SUCCESS, ErrorReply(), now=NOW, site_serial=1)
    )
    encrypted = bytes([data[0], data[1], data[2] | EnvelopeFlag.ENCRYPTED]) + data[3:]
    long_body = data[:40] + struct.pack(">I", len(data)) + data[44:]
    long_request = encode(
        Message(ENVELOPES[0], Header(OpCode.RESOLUTION), ResolutionRequest("a/" + "x" * 600))
    )
    for bad in (
        b"",
        data[:43],  # no whole header
        data[:-1],  # shorter than its envelope says
        data + b"\x00",
        bytes(fragment_encoded(long_request)[0]),  # a fragment, not a whole message
        encrypted,
        reply,  # a reply, not a request
        long_body,  # a body longer than the message
    ):
        assert retry_over_tcp(bad, TOO_LARGE, now=NOW, site_serial=1) is None


@pytest.mark.parametrize(
    ("message_bytes", "wire"),
    [(100, 100), (512, 512), (513, 513 + 20), (20 + 492 * 2, 20 + 492 * 2 + 20), (2566, 2666)],
)
def test_wire_bytes_counts_every_envelope(message_bytes: int, wire: int) -> None:
    assert wire_bytes(message_bytes) == wire
    if message_bytes > 100:
        fake = Envelope(length=message_bytes - 20).to_wire() + bytes(message_bytes - 20)
        assert sum(map(len, fragment_encoded(fake))) == wire


@pytest.mark.parametrize(
    "cap", [1, 100, 511, 512, 513, 532, 533, 1004, 1005, 1232, 2665, 2666, 65_536]
)
def test_largest_message_under_a_cap(cap: int) -> None:
    largest = largest_message(cap)
    assert wire_bytes(largest) <= cap < wire_bytes(largest + 1)
