"""RFC 3339 date-times (§5.6) as the history API and ``idnode handle history --at`` take
and print them: always with an offset, printed in UTC with ``Z``.

Stricter than ``datetime.fromisoformat``, which also takes ISO 8601 forms RFC 3339 does
not (a bare date, the basic ``20261101T080000`` form, no offset). A time without an
offset is ambiguous across nodes in different zones, so it is refused rather than
guessed.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

EXAMPLE = "2026-11-01T08:00:00Z"

_DATE_TIME = re.compile(
    r"(?P<date>\d{4}-\d\d-\d\d)[Tt ](?P<time>\d\d:\d\d:\d\d)(?P<fraction>\.\d+)?"
    r"(?P<offset>[Zz]|[+-]\d\d:\d\d)\Z"
)


def parse_time(text: str) -> datetime:
    """An aware datetime in UTC; ValueError saying what form is expected. Fractions of a
    second beyond microseconds (what PostgreSQL keeps) are cut off."""
    found = _DATE_TIME.match(text.strip())
    if found is None:
        raise ValueError(
            f"{text[:40]!r} is not an RFC 3339 time with an offset, such as {EXAMPLE} "
            "or 2026-11-01T16:00:00+08:00"
        )
    fraction = (found["fraction"] or "")[:7]
    offset = "+00:00" if found["offset"] in "Zz" else found["offset"]
    try:
        when = datetime.fromisoformat(f"{found['date']}T{found['time']}{fraction}{offset}")
    except ValueError as exc:
        raise ValueError(f"{text[:40]!r} is not a valid time: {exc}") from None
    return when.astimezone(UTC)


def format_time(when: datetime) -> str:
    """``2026-11-01T08:00:00Z``, with the fraction only when there is one (so a time
    printed here can be given back to ``parse_time`` and name the same instant)."""
    utc = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    text = utc.strftime("%Y-%m-%dT%H:%M:%S")
    if utc.microsecond:
        text += f".{utc.microsecond:06d}".rstrip("0")
    return text + "Z"
