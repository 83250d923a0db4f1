"""Loader for tests/vectors/handle-golden.txt (and, with its path, handle-admin-golden.txt:
same line format; see ``admin_golden``): exchanges captured from the reference.

Each exchange has its wire lines (direction, transport, bytes) and the capture tool's
``# decoded:`` comments, grouped per message into ``DecodedInfo`` (key=value fields of
the envelope, header and body lines). The captures are test data kept in
``tests/vectors`` (docs/protocol.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

GOLDEN_FILE = "handle-golden.txt"
ENVELOPE_BYTES = 20
HEADER_BYTES = 24


def vectors_dir() -> Path:
    return Path(__file__).resolve().parents[1] / "vectors"


@dataclass(frozen=True)
class WireLine:
    direction: str  # "C>S" or "S>C"
    transport: str  # "udp", "tcp#2", ...
    data: bytes

    @property
    def is_udp(self) -> bool:
        return self.transport == "udp"


@dataclass
class DecodedInfo:
    """The capture tool's reading of one message (after reassembly for fragments)."""

    direction: str
    envelope: dict[str, str] = field(default_factory=dict)
    header: dict[str, str] = field(default_factory=dict)
    body: str = ""  # the "body ..." line without its prefix
    fields: dict[str, str] = field(default_factory=dict)  # key=value of the body line
    lines: list[str] = field(default_factory=list)  # everything, for ad-hoc checks


@dataclass
class Exchange:
    number: int
    title: str
    lines: list[WireLine] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)  # every "# ..." line after the title

    @property
    def decoded(self) -> list[DecodedInfo]:
        return group_decoded(self.comments)

    def direction(self, d: str) -> list[WireLine]:
        return [line for line in self.lines if line.direction == d]


_TITLE = re.compile(r"# (\d+)\. (.*)")
_WIRE = re.compile(r"(C>S|S>C) (\d+) ([0-9a-f]+)\Z")
_KV = re.compile(r"(\w+)=('[^']*'|\[[^\]]*\]|\S+)")


def _kv(text: str) -> dict[str, str]:
    return {k: v.strip("'") for k, v in _KV.findall(text)}


def group_decoded(comments: list[str]) -> list[DecodedInfo]:
    out: list[DecodedInfo] = []
    for c in comments:
        if not c.startswith("# decoded:"):
            continue
        text = c[len("# decoded:") :].strip()
        m = re.match(r"(C>S|S>C)\[[^\]]*\] (.*)", text)
        if m:
            direction, rest = m.groups()
            continuing = out and out[-1].direction == direction and not out[-1].header
            if rest.startswith("env "):
                frag = re.search(r"\[fragment (\d+):", rest)
                if not (continuing and frag and frag.group(1) != "0"):
                    out.append(DecodedInfo(direction, envelope=_kv(rest)))
                    out[-1].envelope["version"] = rest.split()[1].lstrip("v")
                    sug = re.search(r"\bsuggest (\d+\.\d+)", rest)
                    out[-1].envelope["suggest"] = sug.group(1) if sug else "none"
            if out:
                out[-1].lines.append(text)
            continue
        if not out:
            continue
        cur = out[-1]
        cur.lines.append(text)
        if text.startswith("header "):
            cur.header = _kv(text)
        elif text.startswith("body ") and not cur.body:
            # The first body line; later ones ("body trailing 2 bytes", admin capture)
            # stay in ``lines``.
            cur.body = text[len("body ") :]
            cur.fields = _kv(cur.body)
    return out


@cache
def load(path: Path | None = None) -> tuple[Exchange, ...]:
    path = path or vectors_dir() / GOLDEN_FILE
    exchanges: list[Exchange] = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.rstrip()
        if m := _TITLE.match(line):
            exchanges.append(Exchange(int(m.group(1)), m.group(2)))
        elif not exchanges:
            continue
        elif m := _WIRE.match(line):
            data = bytes.fromhex(m.group(3))
            if len(data) != int(m.group(2)):
                raise ValueError(
                    f"golden #{exchanges[-1].number}: length {m.group(2)} != {len(data)} bytes"
                )
            exchanges[-1].lines.append(WireLine(m.group(1), "", data))
        elif line.startswith("# "):
            exchanges[-1].comments.append(line)
            if line.startswith("# transport per line:"):
                kinds = dict(
                    item.split("=") for item in line.split(":", 1)[1].replace(" ", "").split(",")
                )
                ex = exchanges[-1]
                ex.lines = [
                    WireLine(w.direction, kinds[str(i + 1)], w.data) for i, w in enumerate(ex.lines)
                ]
    return tuple(exchanges)


def by_number(n: int) -> Exchange:
    return next(e for e in load() if e.number == n)


# --- raw entries: the messages of one exchange, as bytes -------------------------------


@cache
def golden_entries() -> dict[int, list[tuple[str, bytes]]]:
    """Entry number -> [(direction, datagram or TCP message)], in file order."""
    entries: dict[int, list[tuple[str, bytes]]] = {}
    current = None
    for line in (vectors_dir() / GOLDEN_FILE).read_text(encoding="utf-8").splitlines():
        m = re.match(r"# (\d+)\. ", line)
        if m:
            current = int(m.group(1))
            entries[current] = []
        elif line[:3] in ("C>S", "S>C") and current is not None:
            direction, length, hexdata = line.split()
            data = bytes.fromhex(hexdata)
            assert len(data) == int(length)
            entries[current].append((direction, data))
    return entries


def reply_body(entry: int) -> bytes:
    """The body of the server's reply, UDP fragments reassembled by sequence number."""
    frags = [data for direction, data in golden_entries()[entry] if direction == "S>C"]
    frags.sort(key=lambda d: int.from_bytes(d[12:16], "big"))
    message = b"".join(f[ENVELOPE_BYTES:] for f in frags)
    body_len = int.from_bytes(message[HEADER_BYTES - 4 : HEADER_BYTES], "big")
    return message[HEADER_BYTES : HEADER_BYTES + body_len]


def reply_value_bytes(entry: int) -> bytes:
    """u32 count + values of a resolution or referral reply (after the handle)."""
    body = reply_body(entry)
    handle_len = int.from_bytes(body[:4], "big")
    return body[4 + handle_len :]


GOLDEN_ADMIN = bytes.fromhex("0fff0000000c38382e3131382f41444d494e0000012c")
