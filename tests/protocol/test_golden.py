"""Every exchange captured from the reference decodes, re-encodes byte for byte, agrees
with the capture tool's reading, and the reply conventions rebuild the reference's
replies from its requests."""

from __future__ import annotations

import pytest

from protocol.bodies import (
    ErrorReply,
    ReferralReply,
    ResolutionReply,
    ResolutionRequest,
    SiteInfoReply,
    SiteInfoRequest,
)
from protocol.codes import OpFlag, ResponseCode
from protocol.fragment import Reassembler, fragment_encoded
from protocol.message import Message, decode, encode
from protocol.negotiate import encode_reply, reply_version
from tests.protocol.golden import DecodedInfo, Exchange, by_number, load

EXCHANGES = load()


def _ids(e: Exchange) -> str:
    return f"#{e.number}"


def messages(e: Exchange) -> list[tuple[str, bytes, list[bytes], Message]]:
    """(direction, whole message bytes, the datagrams/frames it came in, decoded)."""
    out = []
    ra = Reassembler()
    pending: list[bytes] = []
    for line in e.lines:
        if not line.is_udp:
            out.append((line.direction, line.data, [line.data], decode(line.data)))
            continue
        pending.append(line.data)
        whole = ra.feed(line.data, now=0.0)
        if whole is not None:
            out.append((line.direction, whole, pending, decode(whole)))
            pending = []
    assert not pending and ra.pending == 0
    return out


def test_vectors_loaded() -> None:
    assert [e.number for e in EXCHANGES] == list(range(1, 23))
    assert all(len(e.decoded) == 2 for e in EXCHANGES)


@pytest.mark.parametrize("exchange", EXCHANGES, ids=_ids)
def test_decodes_and_reencodes_byte_for_byte(exchange: Exchange) -> None:
    decoded = messages(exchange)
    assert [d for d, *_ in decoded] == ["C>S", "S>C"]
    for _, whole, parts, msg in decoded:
        again = encode(msg)
        assert again == whole
        if exchange.lines[0].is_udp:
            assert fragment_encoded(again) == parts


@pytest.mark.parametrize("exchange", EXCHANGES, ids=_ids)
def test_fields_match_capture(exchange: Exchange) -> None:
    for (direction, whole, _parts, msg), info in zip(
        messages(exchange), exchange.decoded, strict=True
    ):
        assert direction == info.direction
        _check_envelope(msg, info, whole)
        _check_header(msg, info)
        _check_body(msg, info)
        assert msg.credential is None
        assert any("credential: none (length 0)" in line for line in info.lines)


def _check_envelope(msg: Message, info: DecodedInfo, whole: bytes) -> None:
    env, e = msg.envelope, info.envelope
    assert f"{env.major}.{env.minor}" == e["version"]
    assert (
        f"{env.suggested_major}.{env.suggested_minor}" if env.suggested_version else "none"
    ) == e["suggest"]
    assert env.session_id == int(e["session"])
    assert env.request_id == int(e["reqId"], 16)
    assert env.sequence == int(e["msgId"]) == 0
    assert env.length == int(e["msgLen"]) == len(whole) - 20
    assert not env.flags


def _check_header(msg: Message, info: DecodedInfo) -> None:
    h, e = msg.header, info.header
    assert h.opcode == int(e["opCode"].split("(")[0])
    assert h.response_code == int(e["rc"].split("(")[0])
    assert int(h.flags) == int(e["opFlags"].split("[")[0], 16)
    assert h.site_serial == int(e["siteSerial"]) & 0xFFFF
    assert h.recursion == int(e["recursion"])
    assert h.reserved == int(e["reserved"])
    assert h.expiration == int(e["expiration"])
    assert len(msg.body_bytes) + (0 if msg.digest is None else 1 + len(msg.digest.digest)) == int(
        e["bodyLen"]
    )


def _check_body(msg: Message, info: DecodedInfo) -> None:
    body, f = msg.body, info.fields
    values = [line for line in info.lines if line.startswith("value idx=")]
    match body:
        case ResolutionRequest():
            assert info.body.startswith("RESOLUTION request")
            assert body.handle == f["handle"]
            assert str(list(body.indexes)) == f["indexes"]
            assert str(list(body.types)) == f["types"]
        case ResolutionReply():
            assert info.body.startswith("RESOLUTION response")
            assert body.handle == f["handle"]
            assert len(body.values) == int(f["values"]) == len(values)
            for v, line in zip(body.values, values, strict=True):
                assert line.startswith(f"value idx={v.index} type='{v.type}'")
                assert f"ttl={v.ttl} perms={v.permissions:02x}" in line
        case ErrorReply():
            assert info.body == f"ERROR message={body.message or '(empty)'}"
        case ReferralReply():
            assert info.body.startswith("REFERRAL") and body.handle == f["handle"]
            count = next(line for line in info.lines if line.startswith("referral values="))
            assert body.values is not None and len(body.values) == int(count.split("=")[1])
        case SiteInfoRequest():
            assert info.body == f"GET_SITE_INFO request handle='{body.handle}'"
        case SiteInfoReply():
            line = next(line for line in info.lines if line.startswith("siteinfo:"))
            site = body.site
            assert f"serial={site.serial} " in line and f"servers={len(site.servers)}" in line
            assert f"protocol={site.major}.{site.minor} " in line
            assert site.servers[0].address.hex() in " ".join(info.lines)
        case _:
            pytest.fail(f"unexpected body {body!r}")


@pytest.mark.parametrize("exchange", EXCHANGES, ids=_ids)
def test_reply_conventions_rebuild_the_reference_reply(exchange: Exchange) -> None:
    """From the request, the reference reply's body, its clock and its site serial,
    ``encode_reply`` produces the reference's datagrams exactly (version, ids, flags
    0x99000000, recursion, expiration, fragmentation)."""
    (_, _, _, request), (_, whole, parts, reply) = messages(exchange)
    out = encode_reply(
        request,
        ResponseCode(reply.header.response_code),
        reply.body,
        now=reply.header.expiration - 43_200,
        site_serial=reply.header.site_serial,
    )
    assert out == whole
    if exchange.lines[0].is_udp:
        assert fragment_encoded(out) == parts


@pytest.mark.parametrize("number", [17, 18, 19, 20])
def test_reply_version_negotiation(number: int) -> None:
    (_, _, _, request), (_, _, _, reply) = messages(by_number(number))
    assert reply_version(request.envelope) == reply.envelope.version
    assert reply.envelope.suggested_version == (2, 11)


def test_reply_version_cases() -> None:
    expected = {17: (2, 1), 18: (2, 1), 19: (2, 1), 20: (2, 11)}
    for number, version in expected.items():
        (_, _, _, request), _ = messages(by_number(number))
        assert reply_version(request.envelope) == version
    (_, _, _, request), _ = messages(by_number(1))
    assert reply_version(request.envelope) == (2, 11)
    (_, _, _, request), _ = messages(by_number(13))  # envelope 2.3 suggesting 2.11
    assert reply_version(request.envelope) == (2, 11)


def test_fragmented_replies() -> None:
    for number, sizes in {9: [512] * 5 + [106], 21: [512, 401]}.items():
        reply = by_number(number).direction("S>C")
        assert [len(d.data) for d in reply] == sizes
        seqs = [int.from_bytes(d.data[12:16], "big") for d in reply]
        assert seqs == list(range(len(reply)))
        assert all(d.data[2] & 0x20 == 0 for d in reply)  # never the truncated flag


def test_client_flags() -> None:
    (_, _, _, request), (_, _, _, reply) = messages(by_number(1))
    assert request.header.flags == OpFlag.RECU | OpFlag.CACR | OpFlag.PUBL
    assert reply.header.flags == OpFlag.AUTH | OpFlag.RECU | OpFlag.CACR | OpFlag.PUBL
