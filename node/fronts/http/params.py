"""Query parameters of the REST API, parsed strictly: a bad one is a 400 naming it.

Flags follow the reference (``getBooleanParameter``) where it is lenient for good
reason: given without a value (``?pretty``) they are true; "true"/"yes" in any case
too. Unlike the reference, a value that is neither true nor false is an error rather
than a silent false (``overwrite=flase`` must not overwrite-by-accident).

Integers are ASCII digits with an optional leading '-', nothing else: ``str.isdigit``
also accepts '²' and '٣', which ``int`` then refuses, so a check built on it turned
such a parameter into a 500. Every integer parameter of every endpoint goes through
``integer`` here.

Value filters are bounded (``protocol.values.MAX_REQUESTED_TYPES`` and
``MAX_REQUESTED_INDEXES``, as on the native protocol): filtering costs values x types,
and no client needs more than a record can hold.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Literal

from multidict import MultiMapping

from node.fronts.http.errors import ApiError
from protocol.codes import ResponseCode
from protocol.values import MAX_REQUESTED_INDEXES, MAX_REQUESTED_TYPES, MAX_TYPE_BYTES
from registry.store import MAX_PAGE_SIZE

_TRUE = frozenset({"", "true", "yes", "1", "on"})
_FALSE = frozenset({"false", "no", "0", "off"})
# JSONP callbacks: a dotted JavaScript identifier path, nothing that could close the
# call or start markup (the reference only scrubs; we refuse).
_CALLBACK = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*(?:\.[A-Za-z_$][A-Za-z0-9_$]*)*\Z")
MAX_CALLBACK_CHARS = 128
MAX_INDEX = 0xFFFFFFFF
MAX_PAGE = 10**9
# An optional '-' and ASCII digits; 19 of them reach past any bound a caller gives
# (and keep ``int`` from converting thousands of digits).
_INTEGER = re.compile(r"-?[0-9]{1,19}\Z")

Query = MultiMapping[str] | Mapping[str, str]


def _bad(message: str) -> ApiError:
    return ApiError(ResponseCode.PROTOCOL_ERROR, message)


def _last(query: Query, name: str) -> str | None:
    if isinstance(query, MultiMapping):
        values = query.getall(name, [])
        return values[-1] if values else None
    return query.get(name)


def _all(query: Query, name: str) -> list[str]:
    if isinstance(query, MultiMapping):
        return list(query.getall(name, []))
    value = query.get(name)
    return [] if value is None else [value]


def flag(query: Query, name: str, default: bool = False) -> bool:
    value = _last(query, name)
    if value is None:
        return default
    low = value.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise _bad(f"parameter {name}={value[:40]!r} is not true or false")


def indexes(query: Query) -> tuple[int, ...]:
    """``index=`` (repeatable, also comma-separated)."""
    found = indexes_or_various(query, allow_various=False)
    assert found != "various"
    return found


def indexes_or_various(
    query: Query, *, allow_various: bool = True
) -> tuple[int, ...] | Literal["various"]:
    """``index=`` as a PUT takes it: also ``various`` (whatever the body holds)."""
    out: list[int] = []
    for raw in _all(query, "index"):
        for part in raw.split(","):
            part = part.strip()
            if allow_various and part.lower() == "various":
                return "various"
            if not _INTEGER.match(part) or not 0 <= int(part) <= MAX_INDEX:
                raise _bad(f"parameter index={part[:40]!r} is not a value index (0..{MAX_INDEX})")
            out.append(int(part))
            if len(out) > MAX_REQUESTED_INDEXES:
                raise _bad(
                    f"parameter index names more than {MAX_REQUESTED_INDEXES} indexes "
                    "(a record holds at most that many values)"
                )
    return tuple(dict.fromkeys(out))


def types(query: Query) -> tuple[str, ...]:
    """``type=`` (repeatable): at most ``MAX_REQUESTED_TYPES``, each no longer than a
    stored type can be."""
    out = [t for t in _all(query, "type") if t]
    if len(out) > MAX_REQUESTED_TYPES:
        raise _bad(f"parameter type is given {len(out)} times, at most {MAX_REQUESTED_TYPES}")
    for t in out:
        if len(t.encode("utf-8", "surrogatepass")) > MAX_TYPE_BYTES:
            raise _bad(f"parameter type={t[:40]!r}... is longer than {MAX_TYPE_BYTES} bytes")
    return tuple(out)


def callback(query: Query) -> str | None:
    value = _last(query, "callback")
    if value is None:
        return None
    if len(value) > MAX_CALLBACK_CHARS or not _CALLBACK.match(value):
        raise _bad(
            f"parameter callback must be a JavaScript identifier such as handleReply "
            f"(letters, digits, _ and $, dotted; at most {MAX_CALLBACK_CHARS} characters)"
        )
    return value


def integer(query: Query, name: str, *, low: int, high: int) -> int | None:
    """The last ``name=``, an integer in ``low..high``; None when absent. Given but
    empty, or anything but ASCII digits (with an optional '-'), is a 400 naming it."""
    value = _last(query, name)
    if value is None:
        return None
    text = value.strip(" ")
    if not _INTEGER.match(text) or not low <= int(text) <= high:
        shown = "empty" if not value else f"{value[:40]!r}"
        raise _bad(f"parameter {name} is {shown}: give an integer in {low}..{high}")
    return int(text)


def page(query: Query) -> tuple[int | None, int | None]:
    return (
        integer(query, "page", low=0, high=MAX_PAGE),
        integer(query, "pageSize", low=0, high=MAX_PAGE_SIZE),
    )


def weighted(header: str) -> list[tuple[str, float]]:
    """The items of an Accept-style header (``Accept``, ``Accept-Language``), lowercased,
    each with its ``q`` weight (1 when absent, 0 when unreadable)."""
    out = []
    for item in header.split(","):
        token, *options = (part.strip() for part in item.split(";"))
        q = 1.0
        for opt in options:
            name, _, value = opt.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        out.append((token.lower(), q))
    return out
