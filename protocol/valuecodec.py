"""Wire codec of handle values (RFC 3651 §3.1, RFC 3652 §2.2.2.1).

value = u32 index, u32 timestamp, u8 TTL type, u32 TTL, u8 permissions,
        type (UTF-8 string), data (u32 length + bytes),
        u32 reference count + (handle UTF-8 string + u32 index) each.
"""

from __future__ import annotations

import struct

from .codes import TTLType
from .errors import LocalProtocolError, RemoteProtocolError
from .values import MAX_DATA_BYTES, MAX_TYPE_BYTES, HandleValue, Reference, type_problem
from .wirebase import Reader, Writer

# index + timestamp + ttl type + ttl + perms + type len + data len + ref count
MIN_VALUE_BYTES = 4 + 4 + 1 + 4 + 1 + 4 + 4 + 4


def encode_value(w: Writer, v: HandleValue) -> None:
    w.raw(value_to_wire(v))


def decode_value(r: Reader) -> HandleValue:
    index = r.u32("value index")
    timestamp = r.u32("value timestamp")
    ttl_type_raw = r.u8("value TTL type")
    try:
        ttl_type = TTLType(ttl_type_raw)
    except ValueError:
        raise RemoteProtocolError(f"value {index} has unknown TTL type {ttl_type_raw}") from None
    ttl = r.u32("value TTL")
    permissions = r.u8("value permissions")
    vtype = r.utf8("value type")
    if len(vtype) > MAX_TYPE_BYTES:
        raise RemoteProtocolError(f"value {index} type is longer than {MAX_TYPE_BYTES} bytes")
    data = r.blob("value data")
    nrefs = r.count("value references", 8)
    refs = tuple(
        Reference(r.utf8("reference handle"), r.u32("reference index")) for _ in range(nrefs)
    )
    return HandleValue(
        index=index,
        type=vtype,
        data=data,
        ttl=ttl,
        ttl_type=ttl_type,
        timestamp=timestamp,
        permissions=permissions,
        references=refs,
    )


def read_values(r: Reader) -> tuple[HandleValue, ...]:
    """u32 count + values, inside a message body (resolution replies, admin requests)."""
    n = r.count("values", MIN_VALUE_BYTES)
    return tuple(decode_value(r) for _ in range(n))


def write_values(w: Writer, values: tuple[HandleValue, ...]) -> None:
    w.u32(len(values))
    for v in values:
        encode_value(w, v)


def value_to_wire(v: HandleValue) -> bytes:
    # One pack for the fixed fields and one join: every value of every record written,
    # signed or digested passes through here (a batch of 2,000 rolls: 70,000 times).
    if not 0 <= v.index <= 0xFFFFFFFF:
        raise LocalProtocolError(f"value index {v.index} is outside 0..4294967295")
    vtype = v.type.encode("utf-8")
    head = _FIXED.pack(
        v.index,
        v.timestamp & 0xFFFFFFFF,
        int(v.ttl_type),
        v.ttl & 0xFFFFFFFF,
        v.permissions & 0xFF,
        len(vtype),
    )
    refs = v.references
    if not refs:
        return b"".join((head, vtype, _U32.pack(len(v.data)), v.data, _NO_REFS))
    parts = [head, vtype, _U32.pack(len(v.data)), v.data, _U32.pack(len(refs))]
    for ref in refs:
        name = ref.handle.encode("utf-8")
        parts += (_U32.pack(len(name)), name, _U32.pack(ref.index))
    return b"".join(parts)


def encode_values(values: tuple[HandleValue, ...] | list[HandleValue]) -> bytes:
    """u32 count + values: the form a resolution reply carries and the registry stores."""
    w = Writer()
    w.u32(len(values))
    for v in values:
        encode_value(w, v)
    return w.getvalue()


_FIXED = struct.Struct(">IIBIBI")  # index, timestamp, TTL type, TTL, permissions, type length
_U32 = struct.Struct(">I")
_NO_REFS = _U32.pack(0)


def decode_values(data: bytes | memoryview) -> tuple[HandleValue, ...]:
    """u32 count + values. Every record read from the registry passes through here, so
    the common shape (no references) is decoded with direct ``unpack_from`` calls; any
    irregularity falls back to the bounded Reader, which names the problem."""
    buf = bytes(data)
    size = len(buf)
    try:
        (count,) = _U32.unpack_from(buf, 0)
        if count * MIN_VALUE_BYTES > size - 4:
            return _decode_values_checked(buf)
        pos = 4
        out = []
        for _ in range(count):
            index, ts, ttl_type, ttl, perms, tlen = _FIXED.unpack_from(buf, pos)
            pos += 18
            vtype = buf[pos : pos + tlen].decode("utf-8")
            pos += tlen
            (dlen,) = _U32.unpack_from(buf, pos)
            pos += 4
            value_data = buf[pos : pos + dlen]
            pos += dlen
            (nrefs,) = _U32.unpack_from(buf, pos)
            pos += 4
            if nrefs or ttl_type > 1 or len(value_data) != dlen or len(vtype) > MAX_TYPE_BYTES:
                return _decode_values_checked(buf)
            out.append(HandleValue(index, vtype, value_data, ttl, _TTL_TYPES[ttl_type], ts, perms))
        if pos != size:
            return _decode_values_checked(buf)
        return tuple(out)
    except (struct.error, UnicodeDecodeError):
        return _decode_values_checked(buf)


_TTL_TYPES = (TTLType.RELATIVE, TTLType.ABSOLUTE)


def _decode_values_checked(data: bytes | memoryview) -> tuple[HandleValue, ...]:
    r = Reader(data)
    n = r.count("values", MIN_VALUE_BYTES)
    values = tuple(decode_value(r) for _ in range(n))
    if not r.at_end():
        raise RemoteProtocolError(f"{r.remaining()} trailing bytes after {n} values")
    return values


def check_value(v: HandleValue) -> None:
    """Limits on a value we are asked to store (LocalProtocolError names the problem).
    Only new values are checked: decoding (``decode_value``) accepts any type within
    its length, so a stored record with an odd type still resolves and can be
    deleted."""
    if not 0 <= v.index <= 0xFFFFFFFF:
        raise LocalProtocolError(f"value index {v.index} is outside 0..4294967295")
    problem = type_problem(v.type)
    if problem is not None:
        raise LocalProtocolError(f"value {v.index} type {problem}")
    if len(v.data) > MAX_DATA_BYTES:
        raise LocalProtocolError(f"value {v.index} data is longer than {MAX_DATA_BYTES} bytes")
    if not 0 <= v.ttl <= 0xFFFFFFFF:
        raise LocalProtocolError(f"value {v.index} TTL {v.ttl} is outside 0..4294967295")
    if not 0 <= v.permissions <= 0x0F:
        raise LocalProtocolError(f"value {v.index} permissions {v.permissions:#x} are not 4 bits")
