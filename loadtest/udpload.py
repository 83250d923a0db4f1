"""Driving ``udpload`` (loadtest/udpload.c): udpblast's closed loop with several source
sockets and key streams made from one request template (see the C file's header).

A resolution request for ``88.118.2/ROLL-2026-0000000`` is the template; the seven
digits of the roll number are rewritten per request, so the stream can name a million
distinct identifiers, never repeat one (``perm``), follow a Zipf law (``zipf``) or
stay within a hot set (``hot``). Every roll handle has the same length, so the rest of
the request (lengths included) is the same for all of them.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from loadtest.harness import OUT, REPO, BenchError, BlastResult, build_udpblast, taskset
from loadtest.native_udp import resolution_request
from loadtest.rolls import roll_handle

UDPLOAD_SRC = REPO / "loadtest" / "udpload.c"
KEY_DIGITS = 7  # roll_handle: ROLL-2026-%07d
MODES = ("perm", "zipf", "hot")

_LINE = re.compile(
    r"replies (\d+) lost (\d+) seconds ([\d.]+) rate (\d+)/s p50 ([\d.]+)ms p99 ([\d.]+)ms "
    r"sent (\d+) next (\d+)"
)


def build_udpload() -> Path:
    return build_udpblast(UDPLOAD_SRC, OUT / "udpload", libs=("-lm",))


@dataclass(frozen=True)
class KeyStream:
    """Which roll numbers the requests name, out of rolls 0..keys-1."""

    mode: str  # perm | zipf | hot
    keys: int
    zipf_s: float = 1.1
    hot: int = 1
    start: int = 0  # perm: index in the permutation to begin at
    count: int = 0  # send at most this many requests, then stop (0: until the time is up)
    seed: int = 1
    types: tuple[str, ...] = ()  # the request's type filter (() asks for every value)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        if not 1 <= self.keys <= 10**KEY_DIGITS:
            raise ValueError(f"keys must be 1..{10**KEY_DIGITS}")


@dataclass(frozen=True)
class LoadResult:
    blast: BlastResult
    sent: int
    next_start: int  # perm: where a following run continues without repeating a key


def template(types: tuple[str, ...] = ()) -> tuple[str, int]:
    """(hex request for roll 0, byte offset of its roll-number digits)."""
    request = resolution_request(roll_handle(0), types)
    digits = roll_handle(0)[-KEY_DIGITS:].encode()
    offset = request.find(roll_handle(0).encode()) + len(roll_handle(0)) - KEY_DIGITS
    if request[offset : offset + KEY_DIGITS] != digits or request.count(digits) != 1:
        raise BenchError("cannot find the roll number in the request template")
    return request.hex(), offset


def run_udpload(
    binary: Path,
    port: int,
    stream: KeyStream,
    seconds: float,
    window: int,
    *,
    sockets: int = 1,
    cpu: int | None = None,
) -> LoadResult:
    hex_request, offset = template(stream.types)
    args = [
        *taskset(cpu),
        str(binary),
        "127.0.0.1",
        str(port),
        f"{seconds:g}",
        str(window),
        "-t",
        hex_request,
        "-k",
        f"{offset}:{KEY_DIGITS}",
        "-s",
        str(sockets),
        "-m",
        stream.mode,
        "-n",
        str(stream.keys),
        "-z",
        f"{stream.zipf_s:g}",
        "-K",
        str(stream.hot),
        "-b",
        str(stream.start),
        "-c",
        str(stream.count),
        "-r",
        str(stream.seed),
    ]
    timeout = seconds + 60
    try:
        result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise BenchError(f"udpload did not finish within {timeout:.0f} s") from None
    match = _LINE.search(result.stdout)
    if result.returncode != 0 or match is None:
        raise BenchError(f"udpload failed ({result.returncode}): {result.stdout}{result.stderr}")
    replies, lost, secs, rate, p50, p99, sent, nxt = match.groups()
    blast = BlastResult(int(replies), int(lost), float(secs), float(rate), float(p50), float(p99))
    return LoadResult(blast, int(sent), int(nxt))
