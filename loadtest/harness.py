"""What the benchmark scripts share: building and running udpblast, starting and
stopping the processes under test, reading the node's metrics and CPU times.

Every child is started by us, stopped by its pid (SIGINT, then SIGKILL after a grace
period), and asked by the kernel to die with us (PR_SET_PDEATHSIG) should this process
be killed outright. Every wait has a deadline.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO

from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "loadtest" / "out"
DEFAULT_UDPBLAST_SRC = REPO / "loadtest" / "udpblast.c"
HANDLE_ID_OFFSET, HANDLE_ID_LENGTH = 8, 4  # request id in the Handle envelope (docs/protocol.md)

_PR_SET_PDEATHSIG = 1


class BenchError(Exception):
    """The benchmark cannot go on; the message says why."""


def hold_lock(path: Path, what: str) -> IO[str]:
    """An exclusive lock on ``path`` held by this process until the file is closed (or
    the process ends), with its pid written in; BenchError naming the holder when another
    process has it. ``what``: the kept dataset it guards, for the message."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = open(path, "a+")  # noqa: SIM115 (held until the caller closes it)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "?"
        lock.close()
        raise BenchError(
            f"{what} is in use by another benchmark (pid {holder}): run one at a time"
        ) from None
    lock.truncate(0)
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    return lock


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: SIGTERM it when we die, however we die.
    with suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def taskset(cpu: int | None) -> list[str]:
    """Command prefix pinning a child to one CPU (empty when not pinning)."""
    if cpu is None:
        return []
    if shutil.which("taskset") is None:
        raise BenchError("--pin needs taskset (util-linux), which is not installed")
    return ["taskset", "-c", str(cpu)]


def machine_busy(seconds: float = 1.0) -> float:
    """Share of all CPUs busy over ``seconds`` (from /proc/stat): work that is not ours
    when taken before we start anything, and that skews every figure."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return sum(fields), idle

    total0, idle0 = sample()
    time.sleep(seconds)
    total1, idle1 = sample()
    return 1.0 - (idle1 - idle0) / max(1, total1 - total0)


_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU time used so far by these processes (gone ones count 0)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of stat)
    return total * _TICK_S


def process_tree(root: int) -> list[int]:
    """``root`` and its children (a postmaster and its backends)."""
    pids = [root]
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                ppid = int(f.read().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == root:
            pids.append(int(entry))
    return pids


def children_cpu_seconds() -> float:
    """CPU time of our children that have exited (udpblast runs, once each finished)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# -- udpblast ----------------------------------------------------------------------


def build_udpblast(src: Path, out: Path, libs: Sequence[str] = ()) -> Path:
    """gcc -O2 the load generator into ``out``, unless it is newer than its source."""
    if not src.is_file():
        raise BenchError(f"load generator source {src} not found (pass --udpblast-src)")
    if out.exists() and out.stat().st_mtime >= src.stat().st_mtime:
        return out
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        raise BenchError(f"no C compiler (gcc) to build {out.name} with")
    out.parent.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [gcc, "-O2", "-o", str(out), str(src), *libs],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise BenchError(f"building {out.name} failed: {result.stderr.strip()}")
    return out


_BLAST_LINE = re.compile(
    r"replies (\d+) lost (\d+) seconds ([\d.]+) rate (\d+)/s p50 ([\d.]+)ms p99 ([\d.]+)ms"
)


@dataclass(frozen=True)
class BlastResult:
    replies: int
    lost: int
    seconds: float
    rate: float
    p50_ms: float
    p99_ms: float


def run_udpblast(
    binary: Path, port: int, requests: Path, seconds: float, window: int, cpu: int | None
) -> BlastResult:
    args = [
        *taskset(cpu),
        str(binary),
        "127.0.0.1",
        str(port),
        str(requests),
        f"{seconds:g}",
        str(window),
        str(HANDLE_ID_OFFSET),
        str(HANDLE_ID_LENGTH),
    ]
    try:
        result = subprocess.run(
            args, capture_output=True, text=True, timeout=seconds + 30, check=False
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"udpblast did not finish within {seconds + 30:.0f} s") from None
    match = _BLAST_LINE.search(result.stdout)
    if result.returncode != 0 or match is None:
        raise BenchError(f"udpblast failed ({result.returncode}): {result.stdout}{result.stderr}")
    replies, lost, secs, rate, p50, p99 = match.groups()
    return BlastResult(int(replies), int(lost), float(secs), float(rate), float(p50), float(p99))


# -- child processes ---------------------------------------------------------------


class Child:
    """A process we started; its output goes to a log file we can read back."""

    def __init__(
        self, name: str, args: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None
    ):
        self.name = name
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(
                list(args),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=dict(env) if env is not None else None,
                cwd=REPO,
                start_new_session=True,  # Ctrl-C reaches us only; we stop children in order
                # Only called while no other thread runs (the load threads of the profile
                # come later), so running Python between fork and exec is safe here.
                preexec_fn=_die_with_parent,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 15) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def wait_for_line(self, pattern: re.Pattern[str], timeout_s: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            match = pattern.search(self.log_text())
            if match:
                return match
            if self.proc.poll() is not None:
                raise BenchError(
                    f"{self.name} exited with status {self.proc.returncode} before it was ready:\n"
                    f"{self.log_tail()}"
                )
            time.sleep(0.05)
        raise BenchError(f"{self.name} not ready within {timeout_s:.0f} s:\n{self.log_tail()}")

    def stop(self, grace_s: float = 15.0) -> None:
        """SIGINT (a clean shutdown for the node), then SIGKILL when the grace is over."""
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


_NODE_READY = re.compile(r"idnode \S+ ready: .*admin=\S+:(\d+) handle=(\d+)")
_ECHO_READY = re.compile(r"ready (\d+) loop=(\w+)")


def node_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDNODE_")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


_NODE_PORTS = re.compile(r"idnode \S+ ready: .*admin=\S+:(\d+) handle=(\d+) http=(\d+)")


@dataclass
class NodeProcess:
    """An ``idnode serve`` we started, and the ports it reported."""

    child: Child
    handle_port: int
    http_port: int
    admin_port: int

    @property
    def pid(self) -> int:
        return self.child.pid

    def stop(self) -> None:
        self.child.stop()


def start_idnode(
    database_url: str,
    data_dir: Path,
    *,
    name: str = "idnode",
    prefixes: str = "",
    cpu: int | None = None,
    extra_env: Mapping[str, str] | None = None,
    extra_args: Sequence[str] = (),
    python: str = sys.executable,
    ready_timeout_s: float = 90.0,
) -> NodeProcess:
    """``idnode serve`` on free ports, logging to ``loadtest/out/<name>.log``.

    Like ``start_node``, but configurable through ``extra_env`` (IDNODE_* settings: the
    cache, workers) and ``extra_args`` (``--demo``), and reporting every front's port.
    """
    args = [
        *taskset(cpu),
        python,
        "-m",
        "node.cli",
        "serve",
        "--database-url",
        database_url,
        "--data-dir",
        str(data_dir),
        "--handle-port",
        "0",
        "--admin-port",
        "0",
        "--http-port",
        "0",
        *(("--prefixes", prefixes) if prefixes else ()),
        *extra_args,
    ]
    env = node_env() | dict(extra_env or {})
    for attempt in range(3):
        child = Child(name, args, OUT / f"{name}.log", env)
        try:
            match = child.wait_for_line(_NODE_PORTS, ready_timeout_s)
        except BenchError:
            child.stop()
            if attempt < 2 and "address already in use" in child.log_text():
                continue  # port 0: UDP's number may be taken on TCP; pick again (start_node)
            raise
        except BaseException:
            child.stop()
            raise
        return NodeProcess(child, int(match.group(2)), int(match.group(3)), int(match.group(1)))
    raise AssertionError("unreachable")


def start_node(
    database_url: str,
    data_dir: Path,
    prefixes: str,
    cpu: int | None,
    python: str = sys.executable,
    extra_env: Mapping[str, str] | None = None,
) -> tuple[Child, int, int]:
    """``idnode serve`` on free ports (every front: port 0); returns (child, handle port,
    admin port).

    Port 0 everywhere and the ports read back from the "ready" line: no race for a port
    picked in advance. IDNODE_* variables of our environment are not passed on, so
    only the flags here (and ``extra_env``) configure the node.
    """
    args = [
        *taskset(cpu),
        python,
        "-m",
        "node.cli",
        "serve",
        "--database-url",
        database_url,
        "--data-dir",
        str(data_dir),
        "--handle-port",
        "0",
        "--admin-port",
        "0",
        "--http-port",
        "0",
        "--prefixes",
        prefixes,
    ]
    env = node_env() | dict(extra_env or {})
    for attempt in range(3):
        child = Child("idnode", args, OUT / "native_udp_node.log", env)
        try:
            match = child.wait_for_line(_NODE_READY, 90)
        except BenchError:
            child.stop()
            # With port 0 the node binds UDP first and TCP on the same number, which some
            # other socket may hold already: pick again rather than fail the run.
            if attempt < 2 and "address already in use" in child.log_text():
                continue
            raise
        except BaseException:
            child.stop()
            raise
        return child, int(match.group(2)), int(match.group(1))
    raise AssertionError("unreachable")


def start_echo(cpu: int | None, python: str = sys.executable) -> tuple[Child, int, str]:
    """The bare echo floor; returns (child, port, loop kind)."""
    script = REPO / "loadtest" / "udp_echo.py"
    args = [*taskset(cpu), python, "-u", str(script), "--port", "0", "--lifetime-s", "900"]
    child = Child("udp echo", args, OUT / "native_udp_echo.log", node_env())
    try:
        match = child.wait_for_line(_ECHO_READY, 30)
    except BaseException:
        child.stop()
        raise
    return child, int(match.group(1)), match.group(2)


# -- node metrics --------------------------------------------------------------------


def scrape(admin_port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every counter sample of the node's /metrics, keyed by (name, sorted labels)."""
    url = f"http://127.0.0.1:{admin_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith("_total"):
                out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def udp_outcomes(before: Mapping, after: Mapping) -> tuple[Counter[str], Counter[str]]:  # type: ignore[type-arg]
    """(resolution replies by RC, drops by reason) on the UDP front between two scrapes."""
    rcs: Counter[str] = Counter()
    drops: Counter[str] = Counter()
    for (name, labels), value in after.items():
        delta = value - before.get((name, labels), 0.0)
        lab = dict(labels)
        if not delta or lab.get("front") != "udp":
            continue
        if name == "idnode_requests_total" and lab.get("op") == "resolution":
            rcs[lab["rc"]] += int(delta)
        elif name == "idnode_dropped_requests_total":
            drops[lab["reason"]] += int(delta)
    return rcs, drops


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape_samples(admin_port: int) -> Samples:
    """Every sample of the node's /metrics (counters, gauges, histogram buckets), keyed
    by (sample name, sorted labels)."""
    url = f"http://127.0.0.1:{admin_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def sample_sum(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, lab), v in samples.items() if n == name and want <= set(lab))


def histogram_quantile(samples: Samples, name: str, q: float) -> float | None:
    """The q-quantile of histogram ``name`` (``<name>_bucket`` samples), interpolated
    linearly inside the bucket as Prometheus' histogram_quantile does; None when empty."""
    buckets = sorted(
        (float(dict(lab)["le"]), v) for (n, lab), v in samples.items() if n == f"{name}_bucket"
    )
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower_bound  # beyond the last finite bucket: its bound is all we know
            share = (rank - lower_count) / max(count - lower_count, 1e-12)
            return lower_bound + (bound - lower_bound) * share
        lower_bound, lower_count = bound, count
    return None


def rss_bytes(pids: Iterable[int]) -> int:
    """Resident set size of these processes now (VmRSS; gone ones count 0)."""
    return sum(_status_kib(pid, "VmRSS:") for pid in pids) * 1024


def peak_rss_bytes(pids: Iterable[int]) -> int:
    """Highest resident set size these processes reached (VmHWM)."""
    return sum(_status_kib(pid, "VmHWM:") for pid in pids) * 1024


def _status_kib(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def harness_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwind through the same cleanup as Ctrl-C


def run_bench(name: str, run: Callable[[ExitStack], int]) -> int:
    """A benchmark's ``main``: ``run`` registers what it starts (nodes, PostgreSQL, temp
    dirs) on the stack, which is undone in reverse however the run ends. A BenchError is
    one line and exit 2; Ctrl-C or SIGTERM clean up and exit 130."""
    # Started in the background by a shell, SIGINT arrives ignored and Python would not
    # turn it into KeyboardInterrupt: take both signals explicitly.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, harness_sigterm)
    stack = ExitStack()
    try:
        return run(stack)
    except BenchError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{name}: interrupted, cleaning up", file=sys.stderr)
        return 130
    finally:
        # A second Ctrl-C must not cut the cleanup short (PostgreSQL would be left running).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.close()
