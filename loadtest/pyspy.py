"""Profiling the node under load with py-spy, and a text summary of where time goes.

py-spy samples wall-clock stacks: a frame waiting for the CPU (say, in write() while the
PostgreSQL backend it just woke runs on the same core) counts as much as one computing.
Read the shares together with the CPU µs per reply that native_udp.py prints.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .harness import OUT, REPO, run_udpblast


def find_py_spy() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


def py_spy_record(
    py_spy: str, pid: int, seconds: float, output: Path, fmt: str, native: bool = False
) -> subprocess.Popen[str]:
    args = [
        py_spy,
        "record",
        "--pid",
        str(pid),
        "--duration",
        f"{seconds:.0f}",
        "--rate",
        "200",
        "--format",
        fmt,
        "--output",
        str(output),
    ]
    if native:
        args.append("--native")
    # No preexec_fn: a load thread is running. py-spy stops by itself after --duration.
    return subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )


# Where the node's time goes, by the frames a stack passes through (inclusive). A
# needle "fn@path" matches a frame of function fn whose file path contains path; any
# other needle matches a frame containing it.
PROFILE_BUCKETS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("UdpFront._answer (a request's task, all of it)", ("_answer@node/native.py",)),
    ("  decode request (protocol.message.decode)", ("decode@protocol/message.py",)),
    ("  resolver.resolve", ("resolve@node/resolver.py",)),
    ("    registry get_handle (+ asyncpg fetchrow)", ("get_handle@registry/store.py",)),
    ("      decode_values (record bytes -> values)", ("decode_values@protocol/valuecodec.py",)),
    ("    parse_handle", ("parse_handle@protocol/handle.py",)),
    ("  encode reply (negotiate.encode_reply)", ("encode_reply@protocol/negotiate.py",)),
    ("  metrics (prometheus_client)", ("prometheus_client",)),
    ("  fragment_encoded", ("fragment_encoded@protocol/fragment.py",)),
    ("datagram_received (incl. create_task)", ("datagram_received@node/native.py",)),
    (
        "asyncpg pool release: Connection.reset query (a task of its own)",
        ("reset@asyncpg/connection.py",),
    ),
    ("asyncpg (any frame)", ("asyncpg",)),
    # Native frames, seen only when py-spy could unwind them (--native).
    ("write() syscalls (the PostgreSQL socket) [native]", ("write (libc",)),
    ("sendmsg() syscalls (UDP replies) [native]", ("sendmsg (libc",)),
)


_LOOP_THREAD = "run@asyncio/runners.py"


def summarise_collapsed(path: Path, top: int = 15) -> list[str]:
    """Lines of text: inclusive share per bucket, then the hottest leaf frames."""
    stacks: list[tuple[list[str], int]] = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    # Only the event loop's thread: py-spy counts idle pool threads (asyncio.to_thread
    # workers parked on their queue) as busy, which would dilute every share below.
    everything = sum(c for _, c in stacks)
    stacks = [(f, c) for f, c in stacks if _any_frame(f, (_LOOP_THREAD,))]
    total = sum(c for _, c in stacks)
    if not total:
        return ["(no samples of the event-loop thread)"]
    lines = [
        f"{total} samples of the event-loop thread ({everything} in all; idle ones excluded)",
        "inclusive:",
    ]
    for label, needles in PROFILE_BUCKETS:
        hit = sum(c for frames, c in stacks if _any_frame(frames, needles))
        lines.append(f"  {100 * hit / total:5.1f}%  {label}")
    leaves: Counter[str] = Counter()
    for frames, c in stacks:
        leaves[_short(frames[-1])] += c
    lines.append(f"self (top {top} leaf frames):")
    lines += [f"  {100 * c / total:5.1f}%  {name}" for name, c in leaves.most_common(top)]
    return lines


def _any_frame(frames: Iterable[str], needles: tuple[str, ...]) -> bool:
    return any(_frame_matches(f, n) for f in frames for n in needles)


def _frame_matches(frame: str, needle: str) -> bool:
    if "@" not in needle:
        return needle in frame
    func, _, path = needle.partition("@")
    name, _, where = frame.partition(" (")
    # py-spy names methods Class.method
    return (name == func or name.endswith("." + func)) and path in where


def _short(frame: str) -> str:
    # "fn (/abs/path/to/site-packages/pkg/mod.py:12)" -> "fn (pkg/mod.py:12)"
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    for marker in ("site-packages/", str(REPO) + "/", "lib/python3"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{name} ({where})" if where else name


@dataclass(frozen=True)
class Load:
    """How to load the node while py-spy samples it: udpblast as in the measured run."""

    blast: Path
    port: int
    requests: Path
    window: int
    cpu: int | None


def profile_node(pid: int, load: Load, seconds: float) -> list[str]:
    """py-spy the node under load: collapsed stacks, summarised here (with native frames
    when py-spy can unwind them), then a flame graph SVG. Each pass is its own udpblast
    run; the rate during them is no measurement (sampling stops the node)."""
    py_spy = find_py_spy()
    if py_spy is None:
        return ["py-spy not installed (.venv/bin/pip install py-spy): no profile"]
    collapsed, svg = OUT / "native_profile.txt", OUT / "native_profile.svg"
    lines: list[str] = []
    error = _record_under_load(py_spy, pid, load, seconds, collapsed, "raw", native=True)
    if error is not None:
        lines.append(f"py-spy --native failed ({error}); Python frames only")
        error = _record_under_load(py_spy, pid, load, seconds, collapsed, "raw", native=False)
    if error is None:
        lines += summarise_collapsed(collapsed)
    else:
        lines.append(f"py-spy failed: {error}")
    error = _record_under_load(py_spy, pid, load, seconds, svg, "flamegraph", native=False)
    lines.append(f"flame graph: {svg}" if error is None else f"py-spy flamegraph failed: {error}")
    return lines


def _record_under_load(
    py_spy: str, pid: int, load: Load, seconds: float, output: Path, fmt: str, *, native: bool
) -> str | None:
    """One py-spy record while udpblast loads the node; None on success, else why not."""
    output.unlink(missing_ok=True)
    blast_args = (load.blast, load.port, load.requests, seconds + 3, load.window, load.cpu)
    loader = threading.Thread(target=run_udpblast, args=blast_args, daemon=True)
    loader.start()
    time.sleep(1.0)  # let the load reach its steady state first
    spy = py_spy_record(py_spy, pid, seconds, output, fmt, native=native)
    try:
        out, _ = spy.communicate(timeout=seconds + 60)
    except BaseException:
        spy.kill()
        spy.wait(5)
        raise
    finally:
        loader.join(seconds + 40)
    if spy.returncode != 0 or not output.exists() or not output.stat().st_size:
        return out.strip().splitlines()[-1][:300] if out.strip() else f"exit {spy.returncode}"
    return None
