"""Requests a connection answers before its aiohttp application sees them.

An HTTP connection (node.runtime.httpserve) may offer each complete request head to a
``QuickAnswers`` (the HTTP front's kept replies: node.fronts.http.fastlane) while
aiohttp has nothing of the connection's in hand; the answer is the whole reply as
bytes, or None to hand the request, and whatever follows it, to aiohttp.

Only a plain request qualifies (``quick_request``): ``GET`` or ``HEAD`` of an origin-form
target under the answers' prefix, HTTP/1.1, well-formed header fields, and none that
asks for something a ready reply does not do: credentials, a body, an upgrade, the end
of the connection, or a precondition other than If-None-Match. Anything this module
cannot read with certainty goes to aiohttp untouched, which stays the judge of what is
malformed (and answers 400).

``Framing`` follows the bytes handed to aiohttp, request by request, so the connection
knows when aiohttp's parser holds nothing again and requests may be answered here once
more; when it cannot tell (chunked bodies, upgrades, what it does not parse), the
connection stops answering requests itself.
"""

from __future__ import annotations

import re
from typing import Protocol

# RFC 9110 §5.6.2 token characters (a field name); a field value is visible ASCII,
# space and tab here: anything else (obs-text, obs-fold) is aiohttp's to judge.
_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
# An origin-form target of RFC 3986 characters (no fragment, nothing to escape).
_QUICK_LINE = re.compile(rb"(GET|HEAD) (/[A-Za-z0-9\-._~:/?\[\]@!$&'()*+,;=%]*) HTTP/1\.1")
_QUICK_FIELDS = re.compile(rb"(?:\r\n" + _TOKEN + rb":[\t\x20-\x7e]*)+")
# The fields that make a request more than a plain read of a ready reply.
_SPECIAL = re.compile(
    rb"\r\n(authorization|connection|content-length|expect|if-[^:]*|range|"
    rb"transfer-encoding|upgrade):"
)
MAX_QUICK_HEAD = 8190  # aiohttp's line limit: a longer head is aiohttp's to refuse
MAX_QUICK_FIELDS = 64  # aiohttp refuses more than 128

# What Framing follows: any method and target aiohttp may take, HTTP/1.1 only.
_ANY_HEAD = re.compile(
    rb"(" + _TOKEN + rb") [\x21-\x7e]+ HTTP/1\.1((?:\r\n" + _TOKEN + rb":[\t\x20-\x7e\x80-\xff]*)*)"
)
_FRAMING = re.compile(rb"\r\n(connection|content-length|transfer-encoding|upgrade):")
MAX_FRAMED_HEAD = 64 * 1024  # a head still unfinished past this: stop following


class QuickAnswers(Protocol):
    """Ready replies for requests whose target starts with ``prefix``."""

    prefix: bytes

    def answer(
        self,
        target: bytes,
        bodiless: bool,
        if_none_match: bytes | None,
        fields: bytes,
        peer: str | None,
    ) -> bytes | None:
        """The whole reply (``bodiless``: to a HEAD), or None: aiohttp answers.
        ``fields``: the head's header lines, each after its CRLF (for the rare need)."""
        ...

    async def fill(
        self,
        target: bytes,
        bodiless: bool,
        if_none_match: bytes | None,
        fields: bytes,
        peer: str | None,
    ) -> bytes | None:
        """For a request ``answer`` had no reply for: the reply, once what it needs is
        read (and kept for the next ``answer``); None: aiohttp answers."""
        ...


def quick_request(
    data: bytes, start: int, end: int, prefix: bytes
) -> tuple[bytes, bool, bytes | None, bytes] | None:
    """(target, HEAD?, If-None-Match, the header lines) of the plain request whose head
    is ``data[start:end]`` (``end`` at its blank line); None if it is not one."""
    if end - start > MAX_QUICK_HEAD:
        return None
    line_end = data.find(b"\r\n", start, end)
    if line_end < 0:
        line_end = end
    m = _QUICK_LINE.fullmatch(data, start, line_end)
    if m is None:
        return None
    target = m.group(2)
    if not target.startswith(prefix):
        return None
    inm, fields = None, b""
    if line_end < end:
        fields = data[line_end:end]
        known = _KNOWN_FIELDS.get(fields)
        if known is None:
            known = _plain_fields(fields)
            if len(_KNOWN_FIELDS) >= MAX_KNOWN_FIELDS:
                _KNOWN_FIELDS.clear()
            _KNOWN_FIELDS[fields] = known
        if known is NOT_PLAIN:
            return None
        inm = known[0]
    return target, m.group(1) == b"HEAD", inm, fields


# A client sends the same fields request after request (a browser, a library): each
# block is read once and kept with what it says, its If-None-Match or NOT_PLAIN.
NOT_PLAIN: tuple[bytes | None] = (None,)  # told apart by identity from a built (None,)
_KNOWN_FIELDS: dict[bytes, tuple[bytes | None]] = {}
MAX_KNOWN_FIELDS = 512


def _plain_fields(fields: bytes) -> tuple[bytes | None]:
    """(If-None-Match,) of well-formed plain ``fields`` (each line after its CRLF),
    else ``NOT_PLAIN``."""
    if _QUICK_FIELDS.fullmatch(fields) is None:
        return NOT_PLAIN
    lowered = fields.lower()
    if lowered.count(b"\r\n") > MAX_QUICK_FIELDS:
        return NOT_PLAIN
    inm = None
    for special in _SPECIAL.finditer(lowered):
        name = special.group(1)
        value = _value(fields, special.end())
        if name == b"if-none-match" and inm is None:
            inm = value
        elif name != b"connection" or value.lower() != b"keep-alive":
            return NOT_PLAIN
    return (inm,)


def _value(fields: bytes, start: int) -> bytes:
    """The value of the field whose name ends at ``start`` (after its colon)."""
    end = fields.find(b"\r\n", start)
    return fields[start : end if end >= 0 else len(fields)].strip(b" \t")


def body_length(head: bytes) -> int | None:
    """The length of the body following this request head (aiohttp's framing for a
    head this plain: RFC 9112 §6.3), or None for one to stop following at."""
    m = _ANY_HEAD.fullmatch(head)
    if m is None or m.group(1) == b"CONNECT":
        return None
    length = None
    fields = m.group(2)
    for field in _FRAMING.finditer(fields.lower()):
        name = field.group(1)
        value = _value(fields, field.end())
        if name == b"connection" and value.lower() == b"keep-alive":
            continue
        if name != b"content-length" or length is not None or not value.isdigit():
            return None  # chunked, an upgrade, the connection's end, an odd length
        length = int(value)
    return length or 0


class Framing:
    """Where the bytes handed to aiohttp stand: inside a request (its head or body) or
    between two, and how many requests they held. ``lost``: no longer known."""

    __slots__ = ("body", "head", "lost", "requests")

    def __init__(self) -> None:
        self.head = b""  # the unfinished head of the request being handed over
        self.body = 0  # bytes of its body still to come
        self.requests = 0
        self.lost = False

    @property
    def between(self) -> bool:
        return not self.head and not self.body and not self.lost

    def feed(self, data: bytes) -> None:
        if self.lost:
            return
        if self.head:
            data, self.head = self.head + data, b""
        pos, n = 0, len(data)
        while pos < n:
            if self.body:
                taken = min(self.body, n - pos)
                self.body -= taken
                pos += taken
                continue
            end = data.find(b"\r\n\r\n", pos)
            if end < 0:
                self.head = data[pos:]
                self.lost = len(self.head) > MAX_FRAMED_HEAD
                return
            length = body_length(data[pos:end])
            if length is None:
                self.lost = True
                return
            self.requests += 1
            self.body = length
            pos = end + 4
