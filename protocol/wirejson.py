"""The REST API's JSON form of values read in place: ``jsonvalues.values_to_json`` of
the values ``wirescan.select`` kept, built from their spans of the stored wire form
without decoding them into ``HandleValue`` objects first.

Each value's JSON is ``jsonvalues.value_to_json``'s, field for field (the data still
goes through ``jsonvalues.data_to_json``); tests/protocol/test_wirejson.py holds the
two to each other. Timestamps are formatted once per distinct second: a record's values
are mostly stamped together, and records written in one batch share their stamps.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from .codes import DEFAULT_PERMISSIONS
from .jsonvalues import data_to_json, format_timestamp
from .wirescan import DATA_AT, DATA_END, INDEX, PERMISSIONS, START, TTL, TTL_TYPE, TYPE, Span

_U32 = struct.Struct(">I")
_DEFAULT_PERMISSIONS = int(DEFAULT_PERMISSIONS)
_TYPE_AT = 18  # index, timestamp, TTL type, TTL, permissions, then the type's length


@lru_cache(maxsize=4096)
def _stamp(seconds: int) -> str:
    return format_timestamp(seconds)


def values_json(
    wire: bytes,
    spans: Sequence[Span],
    *,
    redact_type: str | None = None,
    redacted: bytes = b"",
) -> list[dict[str, Any]]:
    """``values_to_json`` of the values at ``spans`` of ``wire``, the data of values of
    type ``redact_type`` (upper case) shown as ``redacted`` (as ``wirescan.select`` does)."""
    secret = redact_type.encode("utf-8") if redact_type is not None else None
    out = []
    for s in spans:
        start = s[START]
        vtype = wire[start + _TYPE_AT : s[DATA_AT]].decode("utf-8")
        data = redacted if s[TYPE] == secret else wire[s[DATA_AT] + 4 : s[DATA_END]]
        value: dict[str, Any] = {
            "index": s[INDEX],
            "type": vtype,
            "data": data_to_json(vtype, data),
        }
        perms = s[PERMISSIONS] & 0x0F
        if perms != _DEFAULT_PERMISSIONS:
            value["permissions"] = format(perms, "04b")
        value["ttl"] = _stamp(s[TTL]) if s[TTL_TYPE] == 1 else s[TTL]
        (timestamp,) = _U32.unpack_from(wire, start + 4)
        value["timestamp"] = _stamp(timestamp)
        pos = s[DATA_END]
        (nrefs,) = _U32.unpack_from(wire, pos)
        if nrefs:
            refs = []
            pos += 4
            for _ in range(nrefs):
                (hlen,) = _U32.unpack_from(wire, pos)
                handle = wire[pos + 4 : pos + 4 + hlen].decode("utf-8")
                (index,) = _U32.unpack_from(wire, pos + 4 + hlen)
                refs.append({"handle": handle, "index": index})
                pos += 8 + hlen
            value["references"] = refs
        out.append(value)
    return out
