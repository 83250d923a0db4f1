"""Rules every write path applies the same way, whether one record at a time
(``registry.store``) or a batch (``registry.batch``): timestamps, where a handle is
kept, and whether its prefix takes writes; and what values a caller may send
(``check_incoming``: REST PUT, native CREATE/ADD/MODIFY, batches, bulk import)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence, Sized

from protocol.errors import LocalProtocolError, ValueFormatError
from protocol.handle import Handle, prefix_ancestors
from protocol.valuecodec import check_value
from protocol.values import HandleValue
from registry.errors import UnknownPrefix
from registry.rows import PrefixStatus

MAX_FIELD_CHARS = 512  # of a value in the field index (a B-tree entry has its limits)
EMPTY_RECORD = "no values given: a record holds at least one value (to remove a handle, delete it)"


def check_not_empty(values: Sized) -> None:
    """A create or change sends at least one value: an empty record exists yet answers
    every read with "no values" (RC 200), a state no client means to create."""
    if not len(values):
        raise ValueFormatError(EMPTY_RECORD)


def check_incoming(values: Sequence[HandleValue]) -> None:
    """The values of a create or change, as sent: at least one, and each within
    ``check_value``'s limits (printable type, sizes, permission bits). Raises
    ValueFormatError naming the value. Values already stored are never checked, so a
    record written before a rule existed still resolves, changes and deletes."""
    check_not_empty(values)
    for v in values:
        try:
            check_value(v)
        except LocalProtocolError as exc:
            raise ValueFormatError(exc.message) from None


def same_content(a: HandleValue, b: HandleValue) -> bool:
    """Equal apart from the timestamp, which the registry sets."""
    return (
        a.index == b.index
        and a.type == b.type
        and a.data == b.data
        and a.ttl == b.ttl
        and a.ttl_type == b.ttl_type
        and a.permissions == b.permissions
        and a.references == b.references
    )


def _at(v: HandleValue, timestamp: int) -> HandleValue:
    # The constructor, not dataclasses.replace: a batch stamps tens of thousands of
    # values, and replace() costs several times as much.
    if v.timestamp == timestamp:
        return v
    return HandleValue(
        v.index, v.type, v.data, v.ttl, v.ttl_type, timestamp, v.permissions, v.references
    )


def stamp(
    new: Iterable[HandleValue], old: Sequence[HandleValue], now_s: int
) -> tuple[HandleValue, ...]:
    """Give changed and added values the write time; unchanged ones keep theirs."""
    before = {v.index: v for v in old}
    out = []
    for v in new:
        prev = before.get(v.index)
        keep = prev is not None and same_content(prev, v)
        out.append(_at(v, prev.timestamp if keep and prev else now_s))
    return tuple(sorted(out, key=lambda v: v.index))


def storage_prefixes(handle: Handle) -> tuple[str, ...]:
    """The registered prefix a handle is kept under, in the order to look: its own; and
    for a prefix record 0.NA/X.Y without a registration of its own, its nearest
    registered ancestor (a top-level node keeps its secondaries' 0.NA records under its
    own prefix; a parent's admins create derived ones: docs/authentication.md)."""
    if handle.is_prefix_record:
        return tuple(prefix_ancestors(handle.owning_prefix))
    return (handle.owning_prefix,)


def unusable_prefix(prefix: str, status: PrefixStatus | None) -> UnknownPrefix | None:
    """Why handles under ``prefix`` cannot be written, naming its status; None if they can."""
    if status is None:
        return UnknownPrefix(f"prefix {prefix} is not registered on this node")
    if status != PrefixStatus.ENABLED:
        return UnknownPrefix(
            f"prefix {prefix} is {status.label} (status {int(status)}), not enabled"
        )
    return None
