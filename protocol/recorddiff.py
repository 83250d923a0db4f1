"""What changed between two versions of a record, value by value (the history API and
``idnode handle history``; docs/rest-api.md "History").

Values are matched by index (RFC 3651 §3.1: the index identifies a value within its
record). A value present only after is *added*, only before *removed*; one present in
both whose type, data, TTL (with its type), permissions or references differ is
*changed*, naming which. Timestamps are ignored: the registry restamps only what
changed, and an unchanged value keeping its time is not news.

An HS_SIGNATURE is a JWS of several hundred bytes that changes with every write; it is
reported as "signature added / replaced / removed", never as a blob. Whether it is
valid is the caller's question (it needs keys and certificates: not sans-IO).

Rendering takes two hooks so that a caller decides what a reader may see: ``visible``
(may this value's content be shown?) and ``show`` (the value as it may leave the node,
e.g. a secret's data masked). A value that is not visible still shows *that* it
changed (index, kind of change, which parts), never its type or content.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .codes import TTLType
from .jsonvalues import data_to_json, format_timestamp, value_to_json
from .recordsig import is_signature
from .values import HandleValue

Visible = Callable[[HandleValue], bool]
Show = Callable[[HandleValue], HandleValue]

MAX_BRIEF_CHARS = 72  # of a value's data in a one-line description


class Change(enum.StrEnum):
    ADDED = "added"
    CHANGED = "changed"
    REMOVED = "removed"


class Part(enum.StrEnum):
    """What of a value changed (its timestamp never counts)."""

    TYPE = "type"
    DATA = "data"
    TTL = "ttl"  # the TTL or its type (relative / absolute)
    PERMISSIONS = "permissions"
    REFERENCES = "references"


SYMBOL = {Change.ADDED: "+", Change.CHANGED: "~", Change.REMOVED: "-"}


@dataclass(frozen=True, slots=True)
class ValueChange:
    index: int
    change: Change
    before: HandleValue | None  # None when added
    after: HandleValue | None  # None when removed
    parts: tuple[Part, ...] = ()  # for CHANGED: what differs, in Part order

    @property
    def type(self) -> str:
        """The value's type after the change (before it, for a removal)."""
        value = self.after or self.before
        assert value is not None
        return value.type

    @property
    def signature(self) -> bool:
        """An HS_SIGNATURE on either side: described, never shown as data."""
        return any(v is not None and is_signature(v) for v in (self.before, self.after))


def _parts(a: HandleValue, b: HandleValue) -> tuple[Part, ...]:
    found = []
    if a.type != b.type:
        found.append(Part.TYPE)
    if a.data != b.data:
        found.append(Part.DATA)
    if (a.ttl, a.ttl_type) != (b.ttl, b.ttl_type):
        found.append(Part.TTL)
    if a.permissions != b.permissions:
        found.append(Part.PERMISSIONS)
    if a.references != b.references:
        found.append(Part.REFERENCES)
    return tuple(found)


def diff_values(
    before: Sequence[HandleValue], after: Sequence[HandleValue]
) -> tuple[ValueChange, ...]:
    """Every added, changed or removed value, in index order. A record holds each index
    once (the registry refuses duplicates); should one repeat, its last value counts."""
    old = {v.index: v for v in before}
    new = {v.index: v for v in after}
    out = []
    for index in sorted(old.keys() | new.keys()):
        a, b = old.get(index), new.get(index)
        if a is None:
            assert b is not None
            out.append(ValueChange(index, Change.ADDED, None, b))
        elif b is None:
            out.append(ValueChange(index, Change.REMOVED, a, None))
        else:
            parts = _parts(a, b)
            if parts:
                out.append(ValueChange(index, Change.CHANGED, a, b, parts))
    return tuple(out)


# --- rendering ---------------------------------------------------------------------------


def everything(_: HandleValue) -> bool:
    """The default ``visible``: every value may be shown (the operator's CLI)."""
    return True


def _as_is(v: HandleValue) -> HandleValue:
    return v


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def brief(v: HandleValue, limit: int = MAX_BRIEF_CHARS) -> str:
    """A value's data on part of a line: quoted text, compact JSON for the structured
    forms (HS_ADMIN, HS_VLIST, ...), or a byte count for binary data and signatures."""
    if is_signature(v):
        return f"<signature, {len(v.data)} bytes>"
    data = data_to_json(v.type, v.data)
    if data["format"] == "string":
        text = json.dumps(data["value"], ensure_ascii=False)
    elif data["format"] in ("base64", "hex"):
        text = f"<{len(v.data)} bytes>"
    else:
        text = json.dumps(data["value"], ensure_ascii=False, separators=(",", ":"))
    return _cut(text, limit)


def _part_text(part: Part, v: HandleValue) -> str:
    if part is Part.TYPE:
        return v.type
    if part is Part.DATA:
        return brief(v, MAX_BRIEF_CHARS // 2)
    if part is Part.TTL:
        return format_timestamp(v.ttl) if v.ttl_type == TTLType.ABSOLUTE else str(v.ttl)
    if part is Part.PERMISSIONS:
        return format(v.permissions & 0x0F, "04b")
    return ", ".join(f"{r.index}:{r.handle}" for r in v.references) or "none"


def _shown_sides(c: ValueChange, visible: Visible) -> tuple[HandleValue | None, HandleValue | None]:
    """(before, after) as far as the reader may see them: None when absent or hidden."""
    return (
        c.before if c.before is not None and visible(c.before) else None,
        c.after if c.after is not None and visible(c.after) else None,
    )


def describe(c: ValueChange, *, visible: Visible = everything, show: Show = _as_is) -> str:
    """One line (without the +/~/- of ``SYMBOL``): ``1 URL data: "a" → "b"``."""
    before, after = _shown_sides(c, visible)
    named = after or before
    if named is None:
        parts = f" ({', '.join(c.parts)})" if c.parts else ""
        return f"{c.index} value {c.change}{parts}, not readable"
    head = f"{c.index} {named.type}"
    if c.signature:
        return f"{head} signature {'replaced' if c.change is Change.CHANGED else c.change}"
    if c.change is not Change.CHANGED:
        return f"{head} {brief(show(named))}"
    if before is None or after is None:
        hidden = "new" if after is None else "old"
        return f"{head} changed: {', '.join(c.parts)} (the {hidden} value is not readable)"
    a, b = show(before), show(after)
    return f"{head} " + "; ".join(
        f"{part}: {_part_text(part, a)} → {_part_text(part, b)}"
        if part is not Part.DATA or a.data != b.data
        else f"{part} changed"  # a secret: both sides masked alike
        for part in c.parts
    )


def change_to_json(
    c: ValueChange, *, visible: Visible = everything, show: Show = _as_is
) -> dict[str, Any]:
    """``{index, type, change, parts, before, after, hidden, summary}``: ``before`` and
    ``after`` in the REST value shape, null when absent, not readable or a signature;
    ``type`` null when no side is readable; ``hidden`` when some side is not."""
    before, after = _shown_sides(c, visible)
    named = after or before

    def side(v: HandleValue | None) -> dict[str, Any] | None:
        return None if v is None or is_signature(v) else value_to_json(show(v))

    return {
        "index": c.index,
        "type": named.type if named is not None else None,
        "change": str(c.change),
        "parts": [str(p) for p in c.parts],
        "before": side(before),
        "after": side(after),
        "hidden": (before is None) != (c.before is None) or (after is None) != (c.after is None),
        "summary": describe(c, visible=visible, show=show),
    }


def diff_to_json(
    changes: Sequence[ValueChange], *, visible: Visible = everything, show: Show = _as_is
) -> list[dict[str, Any]]:
    return [change_to_json(c, visible=visible, show=show) for c in changes]
