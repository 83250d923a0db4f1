"""Handle values read in place: where each value of a record's wire form lies, and the
resolution filters applied to that wire form without decoding it into ``HandleValue``
objects and encoding them again.

The registry stores a record as ``u32 count + values`` (``valuecodec.encode_values``),
the very bytes a resolution reply carries. A reply that sends every value unchanged
(the common case: no index or type filter, every value public, no secret) is the
stored bytes themselves; otherwise the values kept are sliced out of them, in order,
an ``HS_SECKEY``'s data replaced as the caller says. The result is byte-for-byte what
``encode_values`` makes of the decoded, filtered values (tests/protocol/test_wirescan.py
holds the two paths to each other).

``scan`` reads only records in the regular form ``decode_values`` accepts without
complaint; anything else (a bad length, invalid UTF-8, an unknown TTL type, trailing
bytes) gives None, and the caller takes the decoding path, which names the problem.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Final, NamedTuple

from .codes import Permission
from .valuecodec import MIN_VALUE_BYTES
from .values import MAX_TYPE_BYTES

_FIXED = struct.Struct(">IIBIBI")  # index, timestamp, TTL type, TTL, permissions, type length
_U32 = struct.Struct(">I")
_PUBLIC_READ = int(Permission.PUBLIC_READ)


# One value of a wire-form record, a plain tuple (a million misses build these; a
# NamedTuple costs a Python-level __new__ each). The fields, by position:
START: Final = 0
END: Final = 1
DATA_AT: Final = 2
DATA_END: Final = 3
INDEX: Final = 4
TYPE: Final = 5
PERMISSIONS: Final = 6
TTL_TYPE: Final = 7
TTL: Final = 8
#   START     offset of its index field        END       offset just past it
#   DATA_AT   offset of its data length field  DATA_END  offset just past its data
#   INDEX     its index
#   TYPE      its type upper-cased as ``HandleValue.type_matches`` compares it
#             (``str.upper``), in UTF-8
#   PERMISSIONS, TTL_TYPE (0 relative, 1 absolute: ``codes.TTLType``), TTL
Span = tuple[int, int, int, int, int, bytes, int, int, int]


def scan(wire: bytes) -> list[Span] | None:
    """The values of ``wire`` (u32 count + values) in order; None unless it is in the
    regular form ``valuecodec.decode_values`` reads."""
    size = len(wire)
    unpack_fixed = _FIXED.unpack_from
    unpack_u32 = _U32.unpack_from
    try:
        (count,) = unpack_u32(wire, 0)
        if count * MIN_VALUE_BYTES > size - 4:
            return None
        pos = 4
        spans = []
        for _ in range(count):
            start = pos
            index, _ts, ttl_type, ttl, perms, tlen = unpack_fixed(wire, pos)
            pos += 18
            end = pos + tlen
            if ttl_type > 1 or end > size:
                return None
            raw_type = wire[pos:end]
            if raw_type.isascii():
                upper = raw_type.upper()  # ASCII: what str.upper gives, in bytes
            else:
                vtype = raw_type.decode("utf-8")
                if len(vtype) > MAX_TYPE_BYTES:
                    return None
                upper = vtype.upper().encode("utf-8")
            data_at = end
            (dlen,) = unpack_u32(wire, end)
            pos = end + 4 + dlen
            if pos > size:
                return None
            data_end = pos
            (nrefs,) = unpack_u32(wire, pos)
            pos += 4
            for _ in range(nrefs):  # handle (UTF-8 string) + u32 index each
                (hlen,) = unpack_u32(wire, pos)
                pos += 4
                if pos + hlen + 4 > size:
                    return None
                wire[pos : pos + hlen].decode("utf-8")
                pos += hlen + 4
            spans.append((start, pos, data_at, data_end, index, upper, perms, ttl_type, ttl))
        if pos != size:
            return None
        return spans
    except (struct.error, UnicodeDecodeError):
        return None


class Selected(NamedTuple):
    wire: bytes  # u32 count + the values kept (``wire`` itself when nothing changed)
    kept: int  # values kept
    private: bool  # a value kept lacks public read permission
    source: bytes  # the record's wire form the selection was made from
    spans: list[Span]  # the values kept, as spans of ``source`` (before any redaction)


def select(
    wire: bytes,
    spans: Sequence[Span],
    indexes: Sequence[int] = (),
    types: Sequence[str] = (),
    *,
    public_only: bool = False,
    redact_type: str | None = None,
    redacted: bytes = b"",
) -> Selected:
    """``values.select_values`` (indexes and types as a union, both empty meaning all),
    then only values with public read permission when ``public_only``, then the data of
    values of type ``redact_type`` (upper case) replaced by ``redacted``, on the wire."""
    idx: set[int] = set()
    exact: set[bytes] = set()
    families: tuple[bytes, ...] = ()
    filtered = bool(indexes or types)
    if filtered:
        idx = set(indexes)
        fams = []
        for t in types:
            # Compared in UTF-8: equal (and prefix) strings have equal (prefix) encodings.
            want = t.upper().encode("utf-8", "surrogatepass")
            if want.endswith(b"."):
                exact.add(want[:-1])
                fams.append(want)
            else:
                exact.add(want)
        families = tuple(fams)
    secret = redact_type.encode("utf-8") if redact_type is not None else None
    kept: list[Span] = []
    private = False
    redacting = False
    for s in spans:
        if filtered and not (
            s[INDEX] in idx or s[TYPE] in exact or (families and s[TYPE].startswith(families))
        ):
            continue
        if not s[PERMISSIONS] & _PUBLIC_READ:
            if public_only:
                continue
            private = True
        if s[TYPE] == secret:
            redacting = True
        kept.append(s)
    if len(kept) == len(spans) and not redacting:
        return Selected(wire, len(kept), private, wire, kept)
    parts = [_U32.pack(len(kept))]
    for s in kept:
        if s[TYPE] == secret:
            parts += (
                wire[s[START] : s[DATA_AT]],
                _U32.pack(len(redacted)),
                redacted,
                wire[s[DATA_END] : s[END]],
            )
        else:
            parts.append(wire[s[START] : s[END]])
    return Selected(b"".join(parts), len(kept), private, wire, kept)
