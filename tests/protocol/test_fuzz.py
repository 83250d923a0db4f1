"""Property tests: decoding either returns a message or raises ProtocolError, nothing
else, whatever the bytes; whatever decodes re-encodes to the same bytes (less the
trailing bytes a resolution request may carry); reassembly of arbitrary fragments only
ever raises ProtocolError and stays within its bounds. The messages of both captures
(handle-golden.txt and, decrypted, handle-admin-golden.txt) are cut and mutated."""

from __future__ import annotations

import random
import struct
from dataclasses import replace
from functools import cache

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.bodies import ResolutionRequest, SiteInfoReply
from protocol.errors import ProtocolError
from protocol.fragment import Reassembler, fragment
from protocol.message import Envelope, Message, decode, encode
from tests.protocol.admin_golden import all_captured
from tests.protocol.golden import load

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@cache
def golden_messages() -> tuple[bytes, ...]:
    out = []
    for e in load():
        ra = Reassembler()
        for line in e.lines:
            whole = ra.feed(line.data, now=0.0) if line.is_udp else line.data
            if whole is not None:
                out.append(whole)
    out.extend(m.plain for _, m in all_captured())
    return tuple(out)


def check(data: bytes) -> Message | None:
    """decode() returns a Message or raises ProtocolError; a Message re-encodes."""
    try:
        msg = decode(data)
    except ProtocolError:
        return None
    again = encode(msg)
    if isinstance(msg.body, ResolutionRequest) and msg.body.trailing:
        # Bytes after a complete resolution request are consumed, not written back
        # (Teleinfo's id-pointer-sdk; docs/authentication.md).
        assert decode(again) == replace(msg, envelope=decode(again).envelope)
        assert len(again) in (len(data) - msg.body.trailing, len(data) - msg.body.trailing + 4)
    elif isinstance(msg.body, SiteInfoReply):
        # SiteInfo keeps only the primary / multi-primary bits of the HS_SITE flags byte
        # (as the reference's booleans do): equal after one normalising round.
        assert encode(decode(again)) == again
    elif len(again) == len(data):
        assert again == data
    else:  # the message ended without its u32 credential length; encode adds it
        assert len(again) == len(data) + 4
        assert decode(again) == replace(msg, envelope=decode(again).envelope)
    return msg


def with_length(data: bytes) -> bytes:
    """Make the envelope's length agree with the data, so parsing gets past it."""
    return (
        data[:16] + struct.pack(">I", max(len(data) - 20, 0)) + data[20:]
        if len(data) >= 20
        else data
    )


@SETTINGS
@given(st.binary(max_size=1200))
def test_arbitrary_bytes(data: bytes) -> None:
    check(data)
    check(with_length(data))


opcodes = st.sampled_from(
    [1, 2, 100, 101, 103, 105, 200, 201, 302, 400, 401, 2000, 2001, 1234, 0xFFFFFFFF]
)
rcs = st.sampled_from([0, 1, 2, 4, 5, 100, 200, 302, 303, 402, 601])
flags = st.sampled_from([0, 0x19000000, 0x99000000, 0x99800000, 0x00800000, 0xFFFFFFFF])


@SETTINGS
@given(opcodes, rcs, flags, st.binary(max_size=600), st.binary(max_size=80), st.booleans())
def test_well_framed_garbage(
    opcode: int, rc: int, op_flags: int, body: bytes, cred: bytes, cred_len: bool
) -> None:
    """A sound envelope and header around arbitrary body and credential bytes reaches
    every body decoder."""
    header = struct.pack(">IIIHBBII", opcode, rc, op_flags, 1, 0, 0, 0, len(body))
    tail = struct.pack(">I", len(cred)) + cred if cred_len else cred
    payload = header + body + tail
    check(struct.pack(">BBBBIIII", 2, 10, 2, 11, 0, 7, 0, len(payload)) + payload)


def test_golden_messages_cut_at_every_length() -> None:
    for data in golden_messages():
        for n in range(len(data)):
            assert check(data[:n]) is None  # the envelope's length no longer matches
            check(with_length(data[:n]))
        assert check(data) is not None


@SETTINGS
@given(st.data())
def test_golden_messages_with_byte_flips(data: st.DataObject) -> None:
    msg = bytearray(data.draw(st.sampled_from(golden_messages())))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(msg) - 1))
        msg[i] ^= data.draw(st.integers(1, 255))
    check(bytes(msg))
    check(with_length(bytes(msg)))


datagrams = st.builds(
    lambda req, seq, total, payload, version: (
        struct.pack(">BBBBIIII", 2, version, 2, 11, 0, req, seq, total) + payload
    ),
    st.integers(0, 3),
    st.integers(0, 8),
    st.integers(0, 3000),
    st.binary(max_size=600),
    st.integers(10, 11),
)


@SETTINGS
@given(st.lists(st.one_of(datagrams, st.binary(max_size=40)), max_size=40), st.integers(1, 4))
def test_reassembler_random_fragments(items: list[bytes], max_pending: int) -> None:
    ra = Reassembler(max_pending=max_pending, max_buffered_bytes=2000, timeout_s=3.0)
    for now, d in enumerate(items):
        try:
            out = ra.feed(d, now=float(now), source=now % 2)
        except ProtocolError:
            out = None
        if out is not None:
            assert Envelope.from_wire(out).length == len(out) - 20
        assert 0 <= ra.pending <= max_pending
        assert 0 <= ra.buffered_bytes <= 2000


@SETTINGS
@given(
    st.binary(min_size=1, max_size=3000), st.integers(21, 600), st.randoms(use_true_random=False)
)
def test_fragments_reassemble_in_any_order(
    payload: bytes, max_datagram: int, rnd: random.Random
) -> None:
    env = Envelope(2, 11, request_id=42)
    parts = fragment(env, payload, max_datagram)
    assert all(len(p) <= max_datagram for p in parts)
    shuffled = parts + parts[: len(parts) // 2]  # some duplicates
    rnd.shuffle(shuffled)
    ra = Reassembler()
    results = [r for p in shuffled if (r := ra.feed(p, now=0.0)) is not None]
    expected = replace(env, length=len(payload)).to_wire() + payload
    # Duplicates that arrive after completion start a fresh (incomplete) message.
    assert results[0] == expected and all(r == expected for r in results)
