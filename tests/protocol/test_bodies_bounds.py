"""Bounds on what one resolution request may ask for (protocol.bodies.ResolutionRequest,
protocol.wirebase.Reader.count): past ``MAX_REQUESTED_INDEXES`` indexes or
``MAX_REQUESTED_TYPES`` types the request is malformed (RC 4) with an error naming the
field, found from the count alone, before any of the items are read."""

from __future__ import annotations

import struct

import pytest

from protocol.bodies import ResolutionRequest, encode_body
from protocol.codes import OpCode, ResponseCode
from protocol.errors import LocalProtocolError, RemoteProtocolError
from protocol.message import MalformedMessage, decode
from protocol.values import MAX_REQUESTED_INDEXES, MAX_REQUESTED_TYPES
from protocol.wirebase import Reader

_U32 = struct.Struct(">I")


def body(handle: str, indexes: list[int], types: list[str]) -> bytes:
    """A ResolutionRequest body written by hand (the encoder refuses these lists)."""
    out = bytearray()
    raw = handle.encode()
    out += _U32.pack(len(raw)) + raw
    out += _U32.pack(len(indexes)) + b"".join(_U32.pack(i) for i in indexes)
    out += _U32.pack(len(types))
    for t in types:
        out += _U32.pack(len(t.encode())) + t.encode()
    return bytes(out)


def wire(data: bytes) -> bytes:
    """A well-framed RESOLUTION request around ``data``."""
    header = struct.pack(">IIIHBBII", OpCode.RESOLUTION, 0, 0, 1, 0, 0, 0, len(data))
    payload = header + data
    return struct.pack(">BBBBIIII", 2, 11, 2, 11, 0, 7, 0, len(payload)) + payload


def test_up_to_the_bounds_is_read() -> None:
    indexes = list(range(1, MAX_REQUESTED_INDEXES + 1))
    types = [f"T{i}" for i in range(MAX_REQUESTED_TYPES)]
    got = ResolutionRequest.read(Reader(body("88.118.2/A", indexes, types)))
    assert len(got.indexes) == MAX_REQUESTED_INDEXES and len(got.types) == MAX_REQUESTED_TYPES


def test_52k_types_are_refused_naming_the_field() -> None:
    """What the issue measured: 52,000 one-letter types in one 256 KB message."""
    data = body("88.118.2/A", [], ["A"] * 52_000)
    with pytest.raises(RemoteProtocolError) as err:
        ResolutionRequest.read(Reader(data))
    assert err.value.message == f"types count 52000 exceeds the limit of {MAX_REQUESTED_TYPES}"
    with pytest.raises(MalformedMessage) as malformed:
        decode(wire(data))
    assert malformed.value.response_code == ResponseCode.PROTOCOL_ERROR
    assert malformed.value.envelope.request_id == 7  # so the node can answer RC 4
    assert "types count 52000" in malformed.value.message


def test_one_past_the_bounds_is_refused() -> None:
    with pytest.raises(RemoteProtocolError, match=r"^indexes count 1001 exceeds the limit of 1000"):
        ResolutionRequest.read(Reader(body("h/x", list(range(1001)), [])))
    with pytest.raises(RemoteProtocolError, match=r"^types count 257 exceeds the limit of 256"):
        ResolutionRequest.read(Reader(body("h/x", [], ["URL"] * 257)))


def test_a_forged_count_is_refused_before_reading_items() -> None:
    """A count of 4 billion types with no bytes behind it: refused by the bound, not by
    running out of bytes after a loop."""
    data = body("h/x", [], []).removesuffix(_U32.pack(0)) + _U32.pack(0xFFFFFFFF)
    with pytest.raises(RemoteProtocolError, match=r"^types count 4294967295 exceeds the limit"):
        ResolutionRequest.read(Reader(data))


def test_the_encoder_refuses_what_the_decoder_would() -> None:
    encode_body(ResolutionRequest("h/x", (), ("URL",) * MAX_REQUESTED_TYPES))
    with pytest.raises(LocalProtocolError, match="257 requested types exceed the limit of 256"):
        encode_body(ResolutionRequest("h/x", (), ("URL",) * 257))
    with pytest.raises(LocalProtocolError, match="1001 requested indexes exceed"):
        encode_body(ResolutionRequest("h/x", tuple(range(1001))))


def test_reader_count_names_its_field() -> None:
    r = Reader(_U32.pack(3) + bytes(12))
    assert r.count("widgets", 4, most=3) == 3
    with pytest.raises(RemoteProtocolError, match=r"^widgets count 3 exceeds the limit of 2$"):
        Reader(_U32.pack(3) + bytes(12)).count("widgets", 4, most=2)
    with pytest.raises(RemoteProtocolError, match=r"^widgets count 4 exceeds the remaining 12"):
        Reader(_U32.pack(4) + bytes(12)).count("widgets", 4)
