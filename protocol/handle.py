"""Handle identifier syntax: ``PREFIX/SUFFIX`` (RFC 3650 §3, IDIS conventions).

One normalisation rule is used everywhere a handle is looked up: ASCII a-z are
folded to upper case and nothing else (the Handle server default, docs/protocol.md), so
``88.118.2/ÉTÉ-x`` finds ``88.118.2/ÉTÉ-X`` but ``été-x`` does not.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from .errors import HandleSyntaxError

# A handle of more than this many UTF-8 bytes is refused. Product identifiers are far
# shorter; the bound keeps keys indexable and a resolution request inside one datagram.
MAX_HANDLE_BYTES = 1024
MAX_PREFIX_BYTES = 128

NA_PREFIX = "0.NA"
_SEGMENT = re.compile(r"[A-Za-z0-9_-]+\Z")
_FOLD = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def normalise(text: str) -> str:
    """The lookup key of a handle or prefix: ASCII a-z upper-cased, all else kept."""
    return text.translate(_FOLD)


@dataclass(frozen=True, slots=True)
class Handle:
    text: str  # as the client spelled it
    prefix: str
    suffix: str

    @property
    def key(self) -> str:
        return normalise(self.text)

    @property
    def is_prefix_record(self) -> bool:
        """``0.NA/<prefix>``: the record describing a prefix."""
        return normalise(self.prefix) == NA_PREFIX.upper()

    @property
    def owning_prefix(self) -> str:
        """The prefix this handle belongs to: the suffix of a ``0.NA/`` record, else its prefix."""
        return self.suffix if self.is_prefix_record else self.prefix


def _check_text(text: str, what: str) -> None:
    if text.isprintable():
        return  # neither Cc nor Cs is printable: one C loop instead of two lookups a character
    for pos, ch in enumerate(text):
        if unicodedata.category(ch) == "Cc":
            raise HandleSyntaxError(
                f"{what} contains control character U+{ord(ch):04X} at position {pos}"
            )
        if unicodedata.category(ch) == "Cs":
            raise HandleSyntaxError(f"{what} contains a lone surrogate at position {pos}")


def parse_prefix(text: str) -> str:
    """Validate a prefix such as ``88.118.2`` or ``0.NA``; return it unchanged."""
    if not text:
        raise HandleSyntaxError("prefix is empty")
    if len(text.encode("utf-8", "surrogatepass")) > MAX_PREFIX_BYTES:
        raise HandleSyntaxError(f"prefix is longer than {MAX_PREFIX_BYTES} bytes")
    for n, segment in enumerate(text.split("."), 1):
        if not segment:
            raise HandleSyntaxError(
                f"prefix {text!r} has an empty segment {n} (segments are separated by single dots)"
            )
        if not _SEGMENT.match(segment):
            raise HandleSyntaxError(
                f"prefix segment {segment!r} may hold only ASCII letters, digits, '-' and '_'"
            )
    return text


def parse_handle(text: str | bytes) -> Handle:
    """Parse ``PREFIX/SUFFIX``; the suffix is any UTF-8 except control characters and
    may itself contain '/'. Raises HandleSyntaxError with a reason a user can act on."""
    if isinstance(text, (bytes, bytearray, memoryview)):
        raw = bytes(text)
        if len(raw) > MAX_HANDLE_BYTES:
            raise HandleSyntaxError(f"handle is longer than {MAX_HANDLE_BYTES} bytes")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise HandleSyntaxError(f"handle is not valid UTF-8 (byte {exc.start})") from None
    if not text:
        raise HandleSyntaxError("handle is empty")
    if len(text.encode("utf-8", "surrogatepass")) > MAX_HANDLE_BYTES:
        raise HandleSyntaxError(f"handle is longer than {MAX_HANDLE_BYTES} bytes")
    _check_text(text, "handle")
    prefix, slash, suffix = text.partition("/")
    if not slash:
        raise HandleSyntaxError(f"handle {text!r} has no '/' between prefix and suffix")
    if not prefix:
        raise HandleSyntaxError(f"handle {text!r} has an empty prefix before '/'")
    if not suffix:
        raise HandleSyntaxError(f"handle {text!r} has an empty suffix after '/'")
    parse_prefix(prefix)
    handle = Handle(text=text, prefix=prefix, suffix=suffix)
    if handle.is_prefix_record:
        try:
            parse_prefix(suffix)
        except HandleSyntaxError as exc:
            raise HandleSyntaxError(f"{text!r} is a prefix record but {exc}") from None
    return handle


def prefix_ancestors(prefix: str) -> list[str]:
    """``88.118.2`` -> ``['88.118.2', '88.118', '88']`` (most specific first)."""
    parts = prefix.split(".")
    return [".".join(parts[:n]) for n in range(len(parts), 0, -1)]


def is_under(prefix: str, parent: str) -> bool:
    """True when ``prefix`` equals ``parent`` or is derived from it (``88.118.2`` under ``88.118``)."""
    p, q = normalise(prefix), normalise(parent)
    return p == q or p.startswith(q + ".")
