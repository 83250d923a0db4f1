"""The handle value model shared by the wire codec, the JSON model and the registry.

A record is an ordered tuple of ``HandleValue``; ``data`` is always the raw bytes
carried on the wire, whatever JSON format it was written in (RFC 3651 §3.1).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field

from .codes import DEFAULT_PERMISSIONS, Permission, TTLType

DEFAULT_TTL_S = 86400

# Limits on one value; the message bound (262,144 bytes) caps a record anyway, these
# make the error name the offending part.
MAX_INDEX = 0xFFFFFFFF
MAX_TYPE_BYTES = 256
MAX_DATA_BYTES = 65536

# Filters of one resolution request (native ResolutionRequest, HTTP ``index=``/``type=``).
# Clients ask for a handful: the reference client's own lookups name a few HS_* types
# (site and service records), and the SDKs' resolveHandle(handle, types, indexes) passes
# what the application names, a field or two. Indexes: no more than a record can hold
# (``protocol.jsonvalues.MAX_VALUES_PER_HANDLE``), so even "these 1000 values" fits.
# Types: 256, far above any client, cheap to match (``select_values``: one set lookup
# per value for plain types), and refused from the count alone before reading any.
MAX_REQUESTED_INDEXES = 1000
MAX_REQUESTED_TYPES = 256

# Characters a value type we store may not hold: controls (NUL, newline...), format
# characters (zero-width, bidi overrides), lone surrogates and line/paragraph
# separators. Anything else printable is allowed (letters of any script, digits, '.',
# '_', '-', '/', as in 0.TYPE/URL or a handle used as a type).
_NOT_IN_TYPES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def type_problem(vtype: str) -> str | None:
    """Why ``vtype`` cannot be a stored value type (to follow "type ..." in a message),
    or None. Stored records are never checked against this (what is there keeps
    resolving); only new values are."""
    if not vtype:
        return "is empty"
    if len(vtype.encode("utf-8", "surrogatepass")) > MAX_TYPE_BYTES:
        return f"is longer than {MAX_TYPE_BYTES} bytes"
    # Nearly every type is printable ASCII: one C-speed test instead of a lookup per
    # character (bulk imports check millions of values).
    ascii_printable = vtype.isascii() and vtype.isprintable()
    for pos, ch in enumerate(() if ascii_printable else vtype):
        cat = unicodedata.category(ch)
        if cat in _NOT_IN_TYPES or (cat == "Zs" and ch != " "):
            return (
                f"{vtype[:40]!r} holds U+{ord(ch):04X} at position {pos}: types are printable text"
            )
    if vtype != vtype.strip(" "):
        return f"{vtype[:40]!r} starts or ends with a space"
    return None


@dataclass(frozen=True, slots=True)
class Reference:
    handle: str
    index: int


_PUBLIC_READ = int(Permission.PUBLIC_READ)  # a plain int: IntFlag's & is slow on hot paths


@dataclass(frozen=True, slots=True)
class HandleValue:
    index: int
    type: str
    data: bytes
    ttl: int = DEFAULT_TTL_S
    ttl_type: TTLType = TTLType.RELATIVE
    timestamp: int = 0  # unix seconds
    permissions: int = int(DEFAULT_PERMISSIONS)
    references: tuple[Reference, ...] = field(default=())

    @property
    def public_read(self) -> bool:
        return bool(self.permissions & _PUBLIC_READ)

    def type_matches(self, wanted: str) -> bool:
        """Type filter as the reference applies it: ASCII case-insensitive; a wanted
        type ending in '.' matches that type and its subtypes ('URL.' -> URL, URL.ALT)."""
        mine = self.type.upper()
        want = wanted.upper()
        if want.endswith("."):
            return mine == want[:-1] or mine.startswith(want)
        return mine == want


def select_values(
    values: Sequence[HandleValue],
    indexes: Sequence[int] = (),
    types: Sequence[str] = (),
) -> list[HandleValue]:
    """Index and type lists combine as a union; both empty means every value."""
    if not indexes and not types:
        return list(values)
    idx = set(indexes)
    # HandleValue.type_matches for all wanted types at once: a set lookup for plain
    # types, a prefix test only for the "URL."-style ones.
    exact = set()
    families = []
    for t in types:
        want = t.upper()
        if want.endswith("."):
            exact.add(want[:-1])
            families.append(want)
        else:
            exact.add(want)
    fams = tuple(families)
    out = []
    for v in values:
        if v.index in idx:
            out.append(v)
            continue
        mine = v.type.upper()
        if mine in exact or (fams and mine.startswith(fams)):
            out.append(v)
    return out
