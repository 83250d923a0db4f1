"""protocol.wirescan: filtering values on the wire gives byte for byte what decoding,
filtering (``select_values``, public read, the HS_SECKEY redaction) and encoding gives,
and a record the scan cannot read in place is one it leaves to the decoder."""

from __future__ import annotations

import dataclasses
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.codes import TTLType
from protocol.errors import ProtocolError
from protocol.valuecodec import decode_values, encode_values
from protocol.values import HandleValue, Reference, select_values
from protocol.wirescan import INDEX, PERMISSIONS, TTL, TTL_TYPE, TYPE, scan, select

SECRET_TYPE = "HS_SECKEY"
REDACTED = b"\x00\x00secret set, not shown"
# Types a filter or the redaction could confuse: case, families, and a non-ASCII
# spelling that str.upper() turns into HS_SECKEY (U+017F LATIN SMALL LETTER LONG S).
TYPES = [
    "URL",
    "url",
    "URL.ALT",
    "URL.",
    "EMAIL",
    "HS_ADMIN",
    "HS_SECKEY",
    "hs_seckey",
    "HS_\u017fECKEY",
    "HS_SITE.PREFIX",
    "缸号",
    "dyeLot",
    "T" * 256,
]
WANTED_TYPES = ["URL", "url.", "URL.", "HS_SECKEY", "hs_\u017feckey", "EMAIL", "缸号", "X", "HS_"]


def _redacted(v: HandleValue) -> HandleValue:
    return dataclasses.replace(v, data=REDACTED) if v.type.upper() == SECRET_TYPE else v


def _slow(
    wire: bytes, indexes: list[int], types: list[str], public_only: bool
) -> tuple[bytes, int, bool]:
    """The decoding path, as node.resolution.resolver does it."""
    values = select_values(decode_values(wire), indexes, types)
    if public_only:
        values = [v for v in values if v.public_read]
    values = [_redacted(v) for v in values]
    return encode_values(values), len(values), any(not v.public_read for v in values)


references = st.lists(
    st.builds(Reference, st.sampled_from(["88.118.2/A", "0.NA/88", "名/字"]), st.integers(0, 300)),
    max_size=2,
).map(tuple)

value = st.builds(
    HandleValue,
    index=st.integers(0, 0xFFFFFFFF),
    type=st.sampled_from(TYPES),
    data=st.binary(max_size=40),
    ttl=st.integers(0, 0xFFFFFFFF),
    ttl_type=st.sampled_from(list(TTLType)),
    timestamp=st.integers(0, 0xFFFFFFFF),
    permissions=st.integers(0, 15),
    references=references,
)


@settings(max_examples=400, deadline=None)
@given(
    values=st.lists(value, max_size=12),
    indexes=st.lists(st.integers(0, 5), max_size=3),
    types=st.lists(st.sampled_from(WANTED_TYPES), max_size=3),
    public_only=st.booleans(),
    renumber=st.booleans(),
)
def test_wire_selection_is_byte_identical_to_decode_filter_encode(
    values: list[HandleValue],
    indexes: list[int],
    types: list[str],
    public_only: bool,
    renumber: bool,
) -> None:
    if renumber:  # small indexes, so index filters hit
        values = [dataclasses.replace(v, index=i) for i, v in enumerate(values)]
    wire = encode_values(values)
    spans = scan(wire)
    assert spans is not None
    decoded = decode_values(wire)
    assert [(s[INDEX], s[TYPE], s[PERMISSIONS], s[TTL_TYPE], s[TTL]) for s in spans] == [
        (v.index, v.type.upper().encode(), v.permissions, int(v.ttl_type), v.ttl) for v in decoded
    ]
    got = select(
        wire,
        spans,
        indexes,
        types,
        public_only=public_only,
        redact_type=SECRET_TYPE,
        redacted=REDACTED,
    )
    assert (got.wire, got.kept, got.private) == _slow(wire, indexes, types, public_only)


def test_an_unchanged_record_is_the_stored_bytes_themselves() -> None:
    wire = encode_values([HandleValue(1, "URL", b"https://example.com"), HandleValue(2, "X", b"")])
    spans = scan(wire)
    assert spans is not None
    assert select(wire, spans, redact_type=SECRET_TYPE, redacted=REDACTED).wire is wire
    assert select(wire, spans, (1, 2), public_only=True).wire is wire


def test_secrets_are_redacted_in_place_and_non_public_values_flagged() -> None:
    values = [
        HandleValue(1, "URL", b"https://example.com"),
        HandleValue(300, "hs_seckey", b"\x00\x02sealed-bytes", permissions=0b1100),
        HandleValue(301, "HS_\u017fECKEY", b"clear", references=(Reference("0.NA/88", 1),)),
    ]
    wire = encode_values(values)
    spans = scan(wire)
    assert spans is not None
    got = select(wire, spans, redact_type=SECRET_TYPE, redacted=REDACTED)
    out = decode_values(got.wire)
    assert [v.data for v in out] == [b"https://example.com", REDACTED, REDACTED]
    assert out[2].references == (Reference("0.NA/88", 1),)
    assert got.private  # 300 is admin-read only
    public = select(wire, spans, public_only=True, redact_type=SECRET_TYPE, redacted=REDACTED)
    assert [v.index for v in decode_values(public.wire)] == [1, 301]
    assert not public.private


def _decodes(wire: bytes) -> bool:
    try:
        decode_values(wire)
    except ProtocolError:
        return False
    return True


@settings(max_examples=400, deadline=None)
@given(values=st.lists(value, min_size=1, max_size=4), cut=st.integers(0, 400), junk=st.binary())
def test_what_the_scan_reads_the_decoder_reads(
    values: list[HandleValue], cut: int, junk: bytes
) -> None:
    """Damaged records: the scan reads one only when decode_values does, and agrees."""
    wire = encode_values(values)
    for damaged in (wire[: cut % len(wire)], wire + junk, junk, wire[:4] + junk + wire[4:]):
        spans = scan(damaged)
        if spans is not None:
            assert _decodes(damaged)
            assert [s[INDEX] for s in spans] == [v.index for v in decode_values(damaged)]


def test_irregular_records_are_left_to_the_decoder() -> None:
    good = encode_values([HandleValue(1, "URL", b"x")])
    bad_ttl_type = bytearray(good)
    bad_ttl_type[4 + 8] = 7  # TTL type byte of the first value
    bad_utf8 = good.replace(b"URL", b"U\xffL")
    too_many = struct.pack(">I", 2) + good[4:]
    for wire in (bytes(bad_ttl_type), bad_utf8, too_many, good + b"\x00", good[:-1], b""):
        assert scan(wire) is None
        assert not _decodes(wire)
