"""Acknowledged writes against crashes: a real ``idnode serve`` on its own embedded
PostgreSQL, concurrent HTTP writers keeping a ledger of every request and its reply, a
fault injected while they write, and afterwards the registry compared with the ledger.

The rules the comparison enforces (``Ledger.check``):

- every acknowledged write (a 2xx PUT, a batch item answered 2xx) is in the registry
  with its content, unless a later write to the same handle changed it;
- a write that got an error (a 503, a dropped connection) is present or absent, never
  half: a record holds the values of one write (both of its values carry the same
  token), and a batch that got an error is in the registry entirely or not at all (one
  transaction);
- every reply is an acknowledgement, a 503 with RC 3 ("retry later"), or, while the node
  itself is down, a refused or dropped connection; none takes longer than ``BOUND_S``.

Each scenario runs on a data dir of its own (``idnode_data_dir``), so its server can be
killed, stopped and frozen without touching the session's PostgreSQL.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson

from protocol.handle import normalise
from protocol.valuecodec import decode_values
from registry.embedded import EmbeddedPostgres
from tests.node.http_support import A, admin_of, admin_value, url_value
from tests.node.process_support import NodeProcess

PREFIX = "88.118.2"  # the silk mill's (demo data); its admin writes
FREE = ["--admin-port", "0", "--handle-port", "0", "--http-port", "0"]
# A short registry deadline, so that a frozen server shows within the scenario's time.
DB_TIMEOUT_S = 2.0
NODE_ENV = {"IDNODE_DB_TIMEOUT_S": str(DB_TIMEOUT_S)}
# No write may take longer than this, whatever the registry does. A registry call that
# fails takes up to two deadlines (the query's, then the cancel's, which the driver
# waits for before the connection goes back to the pool), and a write may first wait
# for the group commit in flight (node.writes.group) before its own fails: four
# deadlines, plus one of slack for a loaded box.
BOUND_S = 5 * DB_TIMEOUT_S
# A frozen server stays frozen longer than the bound: a write that waited for the thaw
# instead of its deadline would show as slow.
FREEZE_S = BOUND_S + 2.0
CLIENT_TIMEOUT_S = 3 * BOUND_S  # past this a request is counted as hung
PUT_WRITERS = 6
BATCH_WRITERS = 2
BATCH_ITEMS = 10
BACKOFF_S = 0.05  # a writer whose connection failed waits this long, as a client would
DEADLINE_S = 25.0  # for any one wait on a condition
_HTTP_PORT = re.compile(r" ready: .* http=(\d+)")


def record(token: str) -> list[dict[str, Any]]:
    """A write's values: the token twice, so a record mixing two writes shows."""
    return [
        url_value(1, f"https://example.com/dur/{token}"),
        {"index": 2, "type": "DESC", "data": {"format": "string", "value": token}},
        admin_value(PREFIX),
    ]


def token_of(values: bytes) -> str | None:
    """The token a stored record carries; None for a record mixing two writes."""
    found = {v.index: v.data.decode() for v in decode_values(values) if v.index in (1, 2)}
    url, desc = found.get(1, ""), found.get(2)
    return desc if url == f"https://example.com/dur/{desc}" else None


# -- the ledger ----------------------------------------------------------------------


@dataclass
class Attempt:
    """One request: what it wrote (handle -> token) and how it ended."""

    kind: str  # "put", "batch items", "batch atomic"
    contents: dict[str, str]
    phase: str  # the scenario's phase when it was sent
    started: float
    elapsed: float = 0.0
    status: int | None = None  # None: no reply (connection refused, dropped, timed out)
    rc: int | None = None
    acked: frozenset[str] = frozenset()
    error: str = ""

    @property
    def outcome(self) -> str:
        if self.status is None:
            if self.error == "timeout":
                return "hung"
            # Refused: never reached a node. Dropped: the node went away mid-request.
            return "refused" if self.error.startswith("ClientConnectorError") else "dropped"
        if 200 <= self.status < 300 and self.acked == frozenset(self.contents):
            return "ack"
        if self.status == 503 and self.rc == 3:
            return "503 RC 3"
        return f"{self.status} RC {self.rc}"


@dataclass
class Verdict:
    acked_writes: int  # acknowledged handle writes (a batch item counts one)
    acked_present: int  # of those, found with their content (or a later write's)
    errored_writes: int  # that reached a node (not refused) and got no acknowledgement
    errored_present: int
    lost: list[str] = field(default_factory=list)
    half: list[str] = field(default_factory=list)
    split_batches: list[str] = field(default_factory=list)
    unclear: list[str] = field(default_factory=list)
    node_errors: list[str] = field(default_factory=list)  # the nodes' error log lines
    outcomes: dict[str, int] = field(default_factory=dict)
    slowest_s: float = 0.0
    recovery_s: float = 0.0  # from the fault's end to the first acknowledgement after it

    def problems(self) -> list[str]:
        out = [f"LOST acknowledged write: {x}" for x in self.lost]
        out += [f"HALF a write: {x}" for x in self.half]
        out += [f"SPLIT batch: {x}" for x in self.split_batches]
        out += [f"UNCLEAR reply: {x}" for x in self.unclear]
        if self.slowest_s > BOUND_S:
            out.append(f"SLOW: a write took {self.slowest_s:.1f} s (bound {BOUND_S:g} s)")
        return out

    def summary(self) -> str:
        return (
            f"{self.acked_writes} acknowledged writes, {self.acked_present} in the registry; "
            f"{self.errored_writes} errored, {self.errored_present} of them present; "
            f"replies {dict(sorted(self.outcomes.items()))}; slowest {self.slowest_s:.2f} s; "
            f"first acknowledgement {self.recovery_s:.2f} s after the fault ended"
            + "".join(f"\n  node: {line}" for line in self.node_errors[:40])
        )


class Ledger:
    def __init__(self) -> None:
        self.attempts: list[Attempt] = []

    def count(self, outcome: str, phase: str | None = None) -> int:
        return sum(
            1
            for a in self.attempts
            if a.outcome == outcome and (phase is None or a.phase == phase) and a.elapsed
        )

    def check(self, stored: dict[str, bytes], allowed_no_connection: bool) -> Verdict:
        """Compare the registry (handle key -> values) with the ledger."""
        per_handle: dict[str, list[Attempt]] = {}
        for a in self.attempts:  # in the order sent; one writer per handle
            for handle in a.contents:
                per_handle.setdefault(handle, []).append(a)
        acked = sum(len(a.acked) for a in self.attempts)
        errored = sum(
            len(a.contents) - len(a.acked) for a in self.attempts if a.outcome != "refused"
        )
        v = Verdict(acked, 0, errored, 0)
        for handle, attempts in per_handle.items():
            values = stored.get(normalise(handle))
            token = None if values is None else token_of(values)
            if values is not None and token is None:
                v.half.append(f"{handle} holds values of two writes")
                continue
            last = max((i for i, a in enumerate(attempts) if handle in a.acked), default=None)
            later = attempts if last is None else attempts[last + 1 :]
            # What the registry may hold: the last acknowledged write, or any write after
            # it that got an error (committed all the same); nothing, if none was acked.
            allowed: set[str | None] = {a.contents[handle] for a in later if handle not in a.acked}
            allowed.add(None if last is None else attempts[last].contents[handle])
            mine = sum(handle in a.acked for a in attempts)
            if token not in allowed:
                want = "absent" if last is None else attempts[last].contents[handle]
                v.lost.append(f"{handle}: acknowledged {want!r}, registry holds {token!r}")
            else:
                # An acknowledged write later replaced is accounted for by the later one.
                v.acked_present += mine
            v.errored_present += sum(
                handle not in a.acked and token == a.contents[handle] for a in attempts
            )
        for a in self.attempts:
            if a.kind.startswith("batch") and not a.acked:
                there = [h for h in a.contents if normalise(h) in stored]
                if there and len(there) != len(a.contents):
                    v.split_batches.append(
                        f"{len(there)} of {len(a.contents)} items of a {a.kind} that got "
                        f"{a.outcome} are in the registry"
                    )
        for a in self.attempts:
            v.outcomes[a.outcome] = v.outcomes.get(a.outcome, 0) + 1
            v.slowest_s = max(v.slowest_s, a.elapsed)
            ok = a.outcome in ("ack", "503 RC 3") or (
                a.outcome in ("refused", "dropped") and allowed_no_connection
            )
            if not ok:
                v.unclear.append(f"{a.kind} in phase {a.phase!r}: {a.outcome} {a.error}".strip())
        return v


# -- the writers -----------------------------------------------------------------------


class Writers:
    """PUT and batch writers against whichever node currently runs (``base`` moves
    when a node is restarted on new ports)."""

    def __init__(self, tag: str, base: str):
        self.tag = tag
        self.base = base
        self.phase = "before"
        self.ledger = Ledger()
        self.stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_S),
            headers={**admin_of(A), "Content-Type": "application/json"},
        )
        self._tasks = [asyncio.create_task(self._put_writer(w)) for w in range(PUT_WRITERS)]
        self._tasks += [asyncio.create_task(self._batch_writer(w)) for w in range(BATCH_WRITERS)]

    async def close(self) -> None:
        self.stop.set()
        try:
            await asyncio.gather(*self._tasks)  # each ends after its request in flight
        finally:
            if self._session is not None:
                await self._session.close()

    def acked(self, phase: str | None = None) -> int:
        return self.ledger.count("ack", phase)

    async def _put_writer(self, w: int) -> None:
        mine: list[str] = []
        n = 0
        while not self.stop.is_set():
            n += 1
            # Every fourth write replaces one of this writer's earlier records.
            if n % 4 == 0 and len(mine) >= 2:
                handle = mine[-2]
            else:
                handle = f"{PREFIX}/DUR-{self.tag}-P{w}-{n:05d}"
                mine.append(handle)
            token = f"{self.tag}-P{w}-{n}"
            await self._send("put", {handle: token}, "PUT", f"/api/handles/{handle}", record(token))

    async def _batch_writer(self, w: int) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            mode = ("items", "atomic")[n % 2]
            contents = {
                f"{PREFIX}/DUR-{self.tag}-B{w}-{n:04d}-{i:02d}": f"{self.tag}-B{w}-{n}-{i}"
                for i in range(BATCH_ITEMS)
            }
            items = [
                {"op": "create", "handle": h, "values": record(t)} for h, t in contents.items()
            ]
            body = {"mode": mode, "items": items}
            await self._send(f"batch {mode}", contents, "POST", "/api/batches", body)

    async def _send(
        self, kind: str, contents: dict[str, str], method: str, path: str, body: Any
    ) -> None:
        assert self._session is not None
        attempt = Attempt(kind, contents, self.phase, time.monotonic())
        self.ledger.attempts.append(attempt)
        try:
            async with self._session.request(
                method, self.base + path, data=orjson.dumps(body)
            ) as resp:
                text = await resp.read()
                attempt.status = resp.status
                reply = orjson.loads(text) if text else {}
                attempt.rc = reply.get("responseCode")
                if resp.status // 100 == 2:
                    attempt.acked = _acknowledged(kind, contents, reply)
                else:
                    attempt.error = str(reply.get("message", ""))[:120]
        except TimeoutError:
            attempt.error = "timeout"
        except (aiohttp.ClientError, orjson.JSONDecodeError) as exc:
            attempt.error = f"{type(exc).__name__}: {exc}"[:160]
        attempt.elapsed = time.monotonic() - attempt.started
        if attempt.status is None and not self.stop.is_set():
            await asyncio.sleep(BACKOFF_S)  # no node to talk to: do not spin


def _acknowledged(kind: str, contents: dict[str, str], reply: Any) -> frozenset[str]:
    if kind == "put":
        return frozenset(contents)
    # A batch: the items its reply answers 2xx (one list entry per item, in order).
    handles = list(contents)
    return frozenset(
        handles[r["item"]] for r in reply.get("results", []) if int(r["status"]) // 100 == 2
    )


# -- the node and its server -----------------------------------------------------------


def http_port(node: NodeProcess) -> int:
    for line in list(node.lines):
        m = _HTTP_PORT.search(line)
        if m:
            return int(m[1])
    raise AssertionError("no HTTP port in the ready line:\n" + node.output)


def start_node(data_dir: Path) -> NodeProcess:
    return NodeProcess(["--data-dir", str(data_dir), *FREE, "--demo"], env=NODE_ENV).start()


def stop_node(node: NodeProcess) -> float:
    """SIGTERM; the seconds it took to exit (status 0, asserted)."""
    t0 = time.monotonic()
    code = node.signal(signal.SIGTERM)
    assert code == 0, node.output[-3000:]
    return time.monotonic() - t0


def server_pids(pg: EmbeddedPostgres) -> list[int]:
    """The postmaster, then its children (backends and auxiliary processes)."""
    root = pg.postmaster_pid()
    assert root is not None
    children = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                ppid = int(f.read().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == root:
            children.append(int(entry))
    return [root, *children]


@contextmanager
def frozen(pg: EmbeddedPostgres) -> Iterator[list[int]]:
    """SIGSTOP the server (postmaster first, so it forks nothing new), SIGCONT after,
    however the block ends."""
    pids = server_pids(pg)
    stopped = []
    try:
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
                stopped.append(pid)
        yield stopped
    finally:
        for pid in stopped:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def error_lines(lines: list[str]) -> list[str]:
    """A node's ERROR lines, each traceback shortened to the project's frames and the
    exception line."""
    out: list[str] = []
    for line in list(lines):
        ours = line.startswith('  File "') and "site-packages" not in line
        exception = bool(out) and not line[:1].isspace() and not line[:4].isdigit()
        if " ERROR " in line or ours or (exception and not line.startswith("Traceback")):
            out.append(line.rstrip())
    return out


async def stored_records(pg: EmbeddedPostgres, tag: str) -> dict[str, bytes]:
    """Handle key -> values of every record the scenario's writers may have made."""
    conn = await asyncpg.connect(pg.dsn)
    try:
        rows = await conn.fetch(
            'SELECT handle_key, "values" FROM handles WHERE handle_key LIKE $1',
            normalise(f"{PREFIX}/DUR-{tag}-") + "%",
        )
    finally:
        await conn.close()
    return {r["handle_key"]: bytes(r["values"]) for r in rows}


async def until(condition: Callable[[], bool], what: str, timeout_s: float = DEADLINE_S) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` past the deadline."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        await asyncio.sleep(0.02)


@dataclass
class Scenario:
    """One node on ``data_dir`` and the writers against it."""

    data_dir: Path
    tag: str
    node: NodeProcess
    writers: Writers
    pg: EmbeddedPostgres
    nodes: list[NodeProcess] = field(default_factory=list)  # every node started
    recovered_at: float = 0.0  # when the node and its server were back

    def base(self) -> str:
        return f"http://127.0.0.1:{http_port(self.node)}"

    async def restart_node(self) -> None:
        """A new node on the same data dir (it adopts or starts the server); the writers
        follow it to its new ports."""
        self.node = await asyncio.to_thread(start_node, self.data_dir)
        self.nodes.append(self.node)
        self.writers.base = self.base()

    async def until_errors(self, count: int, outcome: str = "503 RC 3") -> None:
        await until(
            lambda: self.writers.ledger.count(outcome, "fault") >= count,
            f"{count} writes answered {outcome} during the fault",
        )

    async def recover(self, acks: int = 60) -> None:
        """Writers go on until ``acks`` writes sent after the recovery are acknowledged."""
        self.writers.phase = "after"
        self.recovered_at = time.monotonic()
        await until(
            lambda: self.writers.acked("after") >= acks,
            f"{acks} writes acknowledged after recovery",
        )

    async def verdict(self, *, node_went_down: bool) -> Verdict:
        await self.writers.close()
        stored = await stored_records(self.pg, self.tag)
        verdict = self.writers.ledger.check(stored, allowed_no_connection=node_went_down)
        verdict.node_errors = [e for n in self.nodes for e in error_lines(n.lines)]
        verdict.recovery_s = min(
            (
                a.started + a.elapsed - self.recovered_at
                for a in self.writers.ledger.attempts
                if a.phase == "after" and a.outcome == "ack"
            ),
            default=float("inf"),
        )
        return verdict


@asynccontextmanager
async def scenario(data_dir: Path, tag: str, before_acks: int = 100) -> AsyncIterator[Scenario]:
    """A node with the demo data and writers that have ``before_acks`` writes
    acknowledged; the caller injects its fault (``writers.phase = "fault"``), recovers and
    asks for the verdict. Every node started is stopped afterwards."""
    node = await asyncio.to_thread(start_node, data_dir)
    run = Scenario(data_dir, tag, node, Writers(tag, ""), EmbeddedPostgres(data_dir), [node])
    run.writers.base = run.base()
    try:
        await run.writers.start()
        await until(
            lambda: run.writers.acked() >= before_acks, f"{before_acks} writes before the fault"
        )
        yield run
    finally:
        run.writers.stop.set()
        await run.writers.close()
        for n in run.nodes:
            await asyncio.to_thread(n.stop)
