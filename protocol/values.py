"""The handle value model shared by the wire codec, the JSON model and the registry.

A record is an ordered tuple of ``HandleValue``; ``data`` is always the raw bytes
carried on the wire, whatever JSON format it was written in (RFC 3651 §3.1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .codes import DEFAULT_PERMISSIONS, Permission, TTLType

DEFAULT_TTL_S = 86400

# Limits on one value; the message bound (262,144 bytes) caps a record anyway, these
# make the error name the offending part.
MAX_INDEX = 0xFFFFFFFF
MAX_TYPE_BYTES = 256
MAX_DATA_BYTES = 65536


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
    return [v for v in values if v.index in idx or any(v.type_matches(t) for t in types)]
