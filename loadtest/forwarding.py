"""Forwarded resolution through a three-node tree of real ``idnode serve --demo``
processes: a secondary node answering for identifiers another secondary holds, next to
the authoritative node answering them itself. Prints one table; appends it to
loadtest/out/forwarding.csv.

    .venv/bin/python loadtest/forwarding.py [--samples 200] [--seconds 10] [--warmup 2]
        [--hot 64] [--window 64] [--concurrent 1000] [--pin] [--database-url URL]

The tree, as an operator builds it: one PostgreSQL server (a throwaway embedded one, or
``--database-url``) with three scratch databases, one per node, and a data dir each:

- top: IDNODE_ROLE=top-level, IDNODE_PREFIXES=88;
- textile: IDNODE_PREFIXES=88.118, IDNODE_UPSTREAM=127.0.0.1:<top native port>;
- elevator: IDNODE_PREFIXES=88.119, the same upstream.

Each secondary's identity (``idnode upstream identity``) is admitted on the top
(``idnode upstream admit PREFIX --pubkey FILE``), the secondaries' signing roots go into
one bundle both trust (``idnode keys generate``, ``idnode keys export-public --root``),
and the benchmark waits until ``idnode upstream status`` says each prefix is docked. The
textile rolls (``88.118.2/ROLL-2026-1nnnnn``) and the elevator's own mirror records
(``88.119.2/LIFT-2026-1nnnnn``, the same values) are created over HTTP PUT as the demo
enterprises' admins, so the nodes sign them as they sign any write.

Rows, all from one run (native UDP, flags RECU|CACR|PUBL as the reference client sends):

1. cold forwarded: the elevator asked for textile rolls it has never seen, one at a
   time: the first ask locates 88.118 through the top, the rest go straight to the
   textile node (each also a miss there);
2. direct: the textile node asked for rolls of the same shape, its own cache cold (a
   registry read each), then the same rolls again, warm: row 1's "vs direct" is its p50
   over the cold direct p50;
3. warm forwarded: udpblast against the elevator, ``--hot`` foreign rolls it holds in
   its cache, vs
4. local: the same load for ``--hot`` of the elevator's own records: row 3 / row 4;
5. single flight: ``--concurrent`` requests at once for one roll nobody has asked for;
   how many queries reached the textile node (its own idnode_requests_total, op
   resolution, RC 1) and how many exchanges the elevator sent upstream: the collapse
   factor is requests / textile queries.

Every count the client makes is checked against the nodes' own /metrics; a disagreement
is a WARNING and exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable as a plain script

import aiohttp
import asyncpg
import orjson
from prometheus_client.parser import text_string_to_metric_families

from loadtest.benchtable import Row, append_csv
from loadtest.harness import (
    DEFAULT_UDPBLAST_SRC,
    OUT,
    REPO,
    BenchError,
    BlastResult,
    NodeProcess,
    Samples,
    build_udpblast,
    children_cpu_seconds,
    cpu_seconds,
    machine_busy,
    node_env,
    process_tree,
    run_bench,
    run_udpblast,
    sample_sum,
    start_idnode,
)
from loadtest.lag import basic_auth, quantile
from loadtest.native_admin import loop_kind, new_loop
from loadtest.native_udp import resolution_request
from loadtest.rolls import MAX_FIELDS, RollRecords, as_written, embedded_registry
from node.client.native import ClientError, NativeClient
from node.demo.dataset import LIFT_MAKER, SILK_MILL
from protocol.bodies import ResolutionReply
from protocol.codes import ResponseCode
from protocol.errors import ProtocolError
from protocol.fragment import Reassembler, fragment_encoded
from protocol.jsonvalues import data_from_json, values_to_json
from protocol.message import REQUEST_ID_OFFSET, Message, decode, encode
from protocol.values import HandleValue

TOP, TEXTILE, ELEVATOR = "top", "textile", "elevator"
NODE_PREFIX = {TOP: "88", TEXTILE: "88.118", ELEVATOR: "88.119"}
SERVER_CPU, LOADER_CPU = 1, 0  # --pin: the elevator (the node measured) alone on CPU 1
BUSY_NOTE = 0.1
CSV_PATH = OUT / "forwarding.csv"
TRACE_SITE = "https://trace.example.com/h/"
ASK_TIMEOUT_S = 5.0
DOCK_TIMEOUT_S = 60.0
REGISTER_CLIENTS = 8
REQUEST_LINES = 4096  # udpblast reads at most this many
# Number ranges of the identifiers each part of the run uses (never asked by another).
COLD, DIRECT, HOT, FLIGHT = 100_000, 200_000, 300_000, 400_000
MAX_SAMPLES = 99_999


@dataclass(frozen=True)
class Owner:
    """An enterprise of the demo data on one secondary: where its records go, and the
    admin that writes them."""

    node: str
    prefix: str
    kind: str  # ROLL / LIFT: same length, so both sides' handles are the same size
    secret: str

    @property
    def admin(self) -> str:
        return f"300:{self.prefix}/ADMIN"

    def handle(self, n: int) -> str:
        return f"{self.prefix}/{self.kind}-2026-{n:06d}"


SILK = Owner(TEXTILE, "88.118.2", "ROLL", SILK_MILL.admin_secret)
LIFTS = Owner(ELEVATOR, "88.119.2", "LIFT", LIFT_MAKER.admin_secret)


_STARTED = time.monotonic()


def progress(line: str) -> None:
    print(f"[{time.monotonic() - _STARTED:6.1f}s] {line}", file=sys.stderr, flush=True)


# -- records ----------------------------------------------------------------------------


class Records:
    """What every created record holds: URL (1), HS_ADMIN (100, the owner's admin),
    TEMPLATE (1001) and ``fields`` greige-roll fields (2000+), as loadtest/rolls.py
    builds them (without TEMPLATE when the fields do not complete the template:
    ``rolls.as_written``); the node adds its HS_SIGNATURE."""

    def __init__(self, fields: int, now_s: int | None = None):
        self.fields = fields
        self.now_s = int(time.time()) if now_s is None else now_s
        self._rolls = RollRecords(fields, self.now_s)

    def values(self, owner: Owner, n: int) -> list[HandleValue]:
        admin = data_from_json(
            {
                "format": "admin",
                "value": {
                    "handle": f"{owner.prefix}/ADMIN",
                    "index": 300,
                    "permissions": "111111111111",
                },
            }
        )
        roll = self._rolls.values(n)  # URL, HS_ADMIN, TEMPLATE, fields
        return as_written(
            [
                HandleValue(
                    1, "URL", (TRACE_SITE + owner.handle(n)).encode(), timestamp=self.now_s
                ),
                HandleValue(100, "HS_ADMIN", admin, timestamp=self.now_s),
                *roll[2:],
            ]
        )

    def body(self, owner: Owner, n: int) -> bytes:
        return orjson.dumps(values_to_json(self.values(owner, n)))


class HttpRefused(Exception):
    pass


async def create_records(
    http_port: int, owner: Owner, numbers: Sequence[int], records: Records
) -> int:
    """PUT ``?overwrite=false`` (201) each record as the owner's admin, a few at a time."""
    headers = {
        "Authorization": basic_auth(owner.admin, owner.secret),
        "Content-Type": "application/json",
    }
    todo = list(numbers)
    done = 0

    async def worker(http: aiohttp.ClientSession) -> None:
        nonlocal done
        while todo:
            n = todo.pop()
            url = f"http://127.0.0.1:{http_port}/api/handles/{quote(owner.handle(n), safe='/')}"
            async with http.put(
                url + "?overwrite=false", data=records.body(owner, n), headers=headers
            ) as r:
                body = await r.read()
                if r.status != 201:
                    raise HttpRefused(f"PUT {owner.handle(n)}: HTTP {r.status} {body[:200]!r}")
            done += 1

    connector = aiohttp.TCPConnector(limit=REGISTER_CLIENTS)
    async with aiohttp.ClientSession(connector=connector) as http:
        await asyncio.gather(*(worker(http) for _ in range(REGISTER_CLIENTS)))
    return done


# -- metrics ------------------------------------------------------------------------------


def parse_samples(text: str) -> Samples:
    """Every sample of a /metrics page, keyed by (sample name, sorted labels)."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def scrape(admin_port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=10) as r:
        return parse_samples(r.read().decode())


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    """How much the samples called ``name`` carrying ``labels`` grew between two scrapes."""
    return sample_sum(after, name, **labels) - sample_sum(before, name, **labels)


RESOLVED_OK = ("idnode_requests_total", {"op": "resolution", "rc": "1"})
EXCHANGES = "idnode_upstream_exchange_seconds_count"


def resolved_ok(before: Samples, after: Samples) -> int:
    """Resolutions answered RC 1, every front (idnode_requests_total)."""
    name, labels = RESOLVED_OK
    return int(delta(before, after, name, **labels))


def by_label(before: Samples, after: Samples, name: str, label: str, **labels: str) -> Counter[str]:
    """The growth of ``name`` per value of ``label`` (only the ones that grew)."""
    out: Counter[str] = Counter()
    want = set(labels.items())
    for (n, lab), value in after.items():
        if n != name or not want <= set(lab):
            continue
        grown = value - before.get((n, lab), 0.0)
        if grown:
            out[dict(lab).get(label, "")] += int(grown)
    return out


@dataclass
class Scrapes:
    """One /metrics reading of each node."""

    top: Samples
    textile: Samples
    elevator: Samples


# -- native asks ------------------------------------------------------------------------------


@dataclass
class Asked:
    """Sequential native asks: their latencies, and what did not come back right."""

    ms: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    values: int = 0  # values in the last good reply
    reply_bytes: int = 0  # its size, encoded
    datagrams: int = 0  # the UDP datagrams it takes

    def p(self, q: float) -> float:
        return quantile(self.ms, q)


async def ask_each(port: int, handles: Iterable[str], want_values: int | None = None) -> Asked:
    """Resolve each handle in turn with NativeClient (UDP, default flags RECU|CACR|PUBL),
    timing each from the request to the whole reply."""
    out = Asked()
    client = NativeClient("127.0.0.1", port, timeout_s=ASK_TIMEOUT_S)
    for handle in handles:
        started = time.perf_counter()
        try:
            reply = await client.resolve(handle)
        except ClientError as exc:
            out.problems.append(f"{handle}: {exc}")
            continue
        elapsed = time.perf_counter() - started
        problem = check_reply(reply, handle, want_values)
        if problem:
            out.problems.append(problem)
            continue
        assert isinstance(reply.body, ResolutionReply)
        out.ms.append(1000 * elapsed)
        out.values = len(reply.body.values)
        wire = encode(reply)
        out.reply_bytes, out.datagrams = len(wire), len(fragment_encoded(wire))
    return out


def check_reply(reply: Message, handle: str, want_values: int | None) -> str | None:
    rc = reply.header.response_code
    if rc != ResponseCode.SUCCESS or not isinstance(reply.body, ResolutionReply):
        return f"{handle}: RC {int(rc)}, not 1"
    if reply.body.handle.upper() != handle.upper():
        return f"{handle}: the reply names {reply.body.handle!r}"
    if want_values is not None and len(reply.body.values) != want_values:
        return f"{handle}: {len(reply.body.values)} values, not {want_values}"
    return None


# -- the burst (single flight) ------------------------------------------------------------


@dataclass
class BurstResult:
    sent: int
    rcs: Counter[int]  # reply RC -> requests
    ms: list[float]  # per answered request, from its (last) send to its reply
    rounds: int  # sending rounds needed (1: every request answered the first time)
    problems: list[str] = field(default_factory=list)

    @property
    def answered(self) -> int:
        return sum(self.rcs.values())


class _BurstProtocol(asyncio.DatagramProtocol):
    def __init__(self, handle: str, count: int) -> None:
        self.handle = handle
        self.count = count
        self.reassembler = Reassembler(
            max_pending=4 * count + 64, max_buffered_bytes=64 << 20, timeout_s=30.0
        )
        self.sent_at: dict[int, float] = {}
        self.rcs: dict[int, int] = {}
        self.ms: dict[int, float] = {}
        self.problems: list[str] = []
        self.all_in = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            whole = self.reassembler.feed(data, time.monotonic(), addr)
            if whole is None:
                return
            reply = decode(whole)
        except ProtocolError as exc:
            self.problems.append(f"bad reply datagram: {exc}")
            return
        rid = reply.request_id
        if rid not in self.sent_at or rid in self.rcs:
            return  # not ours, or a reply to a resent request already answered
        self.ms[rid] = 1000 * (time.perf_counter() - self.sent_at[rid])
        problem = check_reply(reply, self.handle, None)
        if problem and reply.header.response_code == ResponseCode.SUCCESS:
            self.problems.append(problem)
        self.rcs[rid] = int(reply.header.response_code)
        if len(self.rcs) == self.count and not self.all_in.done():
            self.all_in.set_result(None)


async def burst(
    port: int, handle: str, count: int, *, round_timeout_s: float = 1.0, rounds: int = 3
) -> BurstResult:
    """``count`` resolution requests for ``handle``, each its own request id, written to
    one UDP socket back to back (nothing awaited between them); what is unanswered after
    ``round_timeout_s`` is sent again, at most ``rounds`` times in all."""
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(
        lambda: _BurstProtocol(handle, count), remote_addr=("127.0.0.1", port)
    )
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    template = bytearray(resolution_request(handle))
    ids = list(range(1, count + 1))
    used = 0
    try:
        for used in range(1, rounds + 1):  # noqa: B007 (reported: rounds needed)
            for rid in ids:
                if rid in proto.rcs:
                    continue
                template[REQUEST_ID_OFFSET : REQUEST_ID_OFFSET + 4] = rid.to_bytes(4, "big")
                proto.sent_at[rid] = time.perf_counter()
                transport.sendto(bytes(template))
            try:
                await asyncio.wait_for(asyncio.shield(proto.all_in), round_timeout_s)
                break
            except TimeoutError:
                continue
    finally:
        transport.close()
    return BurstResult(
        count, Counter(proto.rcs.values()), list(proto.ms.values()), used, proto.problems
    )


# -- the tree -------------------------------------------------------------------------------


@dataclass
class Member:
    name: str
    dsn: str
    data_dir: Path
    proc: NodeProcess | None = None

    @property
    def env(self) -> dict[str, str]:
        """The settings ``idnode`` commands run with for this node."""
        env = {
            "IDNODE_DATABASE_URL": self.dsn,
            "IDNODE_DATA_DIR": str(self.data_dir),
            "IDNODE_PREFIXES": NODE_PREFIX[self.name],
        }
        if self.name == TOP:
            env["IDNODE_ROLE"] = "top-level"
        return env

    @property
    def up(self) -> NodeProcess:
        if self.proc is None:
            raise BenchError(f"the {self.name} node is not running")
        return self.proc


def idnode_cli(*args: str, env: Mapping[str, str], timeout_s: float = 60.0) -> str:
    """``idnode ARGS`` as an operator runs it; its stdout, or BenchError saying why not."""
    try:
        result = subprocess.run(
            [sys.executable, "-m", "node.cli", *args],
            env=node_env() | dict(env),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            cwd=REPO,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"idnode {' '.join(args)} did not finish in {timeout_s:.0f} s") from None
    if result.returncode != 0:
        raise BenchError(
            f"idnode {' '.join(args)} failed ({result.returncode}): "
            f"{(result.stderr or result.stdout).strip()[-500:]}"
        )
    return result.stdout


def docking_states(status_json: str) -> dict[str, str]:
    """prefix -> state from ``idnode upstream status``."""
    report = json.loads(status_json)
    return {p["prefix"]: p["state"] for p in report.get("prefixes", [])}


def wait_docked(member: Member, timeout_s: float = DOCK_TIMEOUT_S) -> dict[str, str]:
    """Until ``idnode upstream status`` (with the member's settings) says its node
    prefix is docked; the states then."""
    prefix = NODE_PREFIX[member.name]
    deadline = time.monotonic() + timeout_s
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        states = docking_states(idnode_cli("upstream", "status", env=member.env))
        if states.get(prefix) == "docked":
            return states
        if member.up.child.proc.poll() is not None:
            raise BenchError(f"the {member.name} node exited:\n{member.up.child.log_tail()}")
        time.sleep(0.3)
    raise BenchError(
        f"{prefix} not docked within {timeout_s:.0f} s: {states}\n{member.up.child.log_tail()}"
    )


def with_database(url: str, database: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + quote(database, safe="")))


async def create_databases(admin_dsn: str, names: Sequence[str]) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:  # our own generated names, no user data
        for name in names:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def drop_databases(admin_dsn: str, names: Sequence[str]) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        for name in names:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def run_tag() -> str:
    return f"{int(time.time()):x}{os.getpid() % 4096:03x}"


def build_tree(
    stack: ExitStack, dsn_of: Callable[[str], str], base: Path, pin: bool
) -> dict[str, Member]:
    """Start the top, admit the secondaries' identities there, give them one trust
    bundle of both signing roots, start them and wait until both are docked."""
    members = {n: Member(n, dsn_of(n), base / n) for n in (TOP, TEXTILE, ELEVATOR)}
    top = members[TOP]
    others_cpu = LOADER_CPU if pin else None
    progress("starting the top-level node (88) ...")
    top.proc = start_idnode(
        top.dsn,
        top.data_dir,
        name="forwarding_top",
        prefixes=NODE_PREFIX[TOP],
        cpu=others_cpu,
        extra_env={"IDNODE_ROLE": "top-level"},
        extra_args=["--demo"],
    )
    stack.callback(top.proc.stop)
    upstream = f"127.0.0.1:{top.proc.handle_port}"
    roots = []
    for name in (TEXTILE, ELEVATOR):
        member = members[name]
        pem = idnode_cli("upstream", "identity", env=member.env)
        if not pem.startswith("-----BEGIN PUBLIC KEY-----"):
            raise BenchError(f"idnode upstream identity ({name}) printed no PEM key: {pem[:200]}")
        key_file = base / f"{name}-identity.pem"
        key_file.write_text(pem)
        said = idnode_cli(
            "upstream", "admit", NODE_PREFIX[name], "--pubkey", str(key_file), env=top.env
        )
        if "admitted" not in said:
            raise BenchError(f"idnode upstream admit {NODE_PREFIX[name]}: {said.strip()}")
        # The signing root each partner trusts (made now, before the node first starts).
        idnode_cli("keys", "generate", env=member.env)
        roots.append(idnode_cli("keys", "export-public", "--root", env=member.env))
        progress(f"{NODE_PREFIX[name]} admitted on the top; {name} signing root exported")
    bundle = base / "roots.pem"
    bundle.write_text("".join(roots))
    for name in (TEXTILE, ELEVATOR):
        member = members[name]
        progress(f"starting the {name} node ({NODE_PREFIX[name]}, upstream {upstream}) ...")
        member.proc = start_idnode(
            member.dsn,
            member.data_dir,
            name=f"forwarding_{name}",
            prefixes=NODE_PREFIX[name],
            cpu=SERVER_CPU if (pin and name == ELEVATOR) else others_cpu,
            extra_env={"IDNODE_UPSTREAM": upstream, "IDNODE_TRUST_ROOT_FILE": str(bundle)},
            extra_args=["--demo"],
        )
        stack.callback(member.proc.stop)
    for name in (TEXTILE, ELEVATOR):
        states = wait_docked(members[name])
        progress(f"{name}: upstream status {states}")
    return members


# -- the measurements -------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    samples: int
    hot: int
    concurrent: int
    seconds: float
    warmup: float
    window: int
    fields: int
    pin: bool
    blast: Path


@dataclass
class Outcome:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def warn(self, text: str) -> None:
        self.problems.append(f"WARNING: {text}")


T = TypeVar("T")


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run the clients' coroutine on a fresh loop (uvloop when installed)."""
    with asyncio.Runner(loop_factory=new_loop) as runner:
        return runner.run(coro)


def scrapes(members: Mapping[str, Member]) -> Scrapes:
    return Scrapes(*(scrape(members[n].up.admin_port) for n in (TOP, TEXTILE, ELEVATOR)))


def _expect(out: Outcome, what: str, got: float, want: float) -> None:
    if got != want:
        out.warn(f"{what}: {got:g}, expected {want:g}")


def cold_and_direct(members: Mapping[str, Member], plan: Plan, out: Outcome) -> int:
    """Rows 1 and 2; returns the values a roll record has (as the textile serves it)."""
    textile, elevator = members[TEXTILE].up, members[ELEVATOR].up
    n = plan.samples
    direct_cold = [SILK.handle(DIRECT + i) for i in range(n)]
    forwarded = [SILK.handle(COLD + i) for i in range(n + 1)]

    # What a record looks like at its home: the reference for every forwarded reply.
    s0 = scrapes(members)
    cold = run_async(ask_each(textile.handle_port, direct_cold))
    s1 = scrapes(members)
    warm = run_async(ask_each(textile.handle_port, direct_cold, cold.values or None))
    s2 = scrapes(members)
    values = cold.values
    for name, asked in (("direct cold", cold), ("direct warm", warm)):
        if asked.problems:
            out.warn(f"{name}: {len(asked.problems)} asks failed, e.g. {asked.problems[0]}")
    reads = delta(s0.textile, s1.textile, "idnode_cache_registry_reads_total")
    _expect(out, "row 2 cold: textile registry reads", reads, n)
    warm_reads = delta(s1.textile, s2.textile, "idnode_cache_registry_reads_total")
    _expect(out, "row 2 warm: textile registry reads", warm_reads, 0)

    # Row 1: the first ask locates 88.118 through the top; then straight to the textile.
    first = run_async(ask_each(elevator.handle_port, forwarded[:1], values))
    s3 = scrapes(members)
    rest = run_async(ask_each(elevator.handle_port, forwarded[1:], values))
    s4 = scrapes(members)
    for name, asked in (("first forwarded ask", first), ("cold forwarded", rest)):
        if asked.problems:
            out.warn(f"{name}: {len(asked.problems)} asks failed, e.g. {asked.problems[0]}")
    top_first = resolved_ok(s2.top, s3.top)
    exch_first = delta(s2.elevator, s3.elevator, EXCHANGES)
    top_rest = resolved_ok(s3.top, s4.top)
    exch_rest = by_label(s3.elevator, s4.elevator, EXCHANGES, "result")
    textile_rest = resolved_ok(s3.textile, s4.textile)
    verdicts = by_label(s2.elevator, s4.elevator, "idnode_forwarded_signatures_total", "verdict")
    # The first ask: the top for 0.NA/88.118.2 (the roll's prefix: its sites) and for
    # 0.NA/88.118 (the signer's certificates, HS_CERT), then the textile for the roll.
    _expect(out, "row 1 first ask: queries the top answered", top_first, 2)
    _expect(out, "row 1 first ask: elevator upstream exchanges", exch_first, 3)
    _expect(out, "row 1: queries the top answered after the first ask", top_rest, 0)
    _expect(out, "row 1: elevator upstream exchanges", sum(exch_rest.values()), n)
    _expect(out, "row 1: textile resolutions RC 1", textile_rest, n)
    if set(verdicts) != {"valid"}:
        out.warn(f"row 1: forwarded records' signatures: {dict(verdicts)} (all valid expected)")

    ratio = rest.p(0.5) / cold.p(0.5) if cold.ms and rest.ms else None
    out.rows += [
        Row(
            "1 cold fwd",
            "elevator: first ask of 88.118 (via top)",
            None,
            first.p(0.5),
            first.p(0.5),
            detail=f"1 sample; {exch_first:.0f} upstream exchanges: the top answered "
            f"{top_first} (0.NA/88.118.2 sites, 0.NA/88.118 certs), then the textile",
        ),
        Row(
            "1 cold fwd",
            f"elevator: {len(rest.ms)} new rolls, 1 at a time",
            None,
            rest.p(0.5),
            rest.p(0.99),
            ratio,
            "direct",
            detail=f"p99 {rest.p(0.99) / cold.p(0.99):.2f}x direct's; "
            f"{sum(exch_rest.values()):.0f} exchanges, all to the textile (top asked "
            f"{top_rest}); signatures {dict(verdicts)}",
        ),
        Row(
            "2 direct",
            f"textile itself, its cache cold ({len(cold.ms)})",
            None,
            cold.p(0.5),
            cold.p(0.99),
            1.0 if cold.ms else None,
            "direct",
            detail=f"{reads:.0f} registry reads; {values} values, {cold.reply_bytes} B reply",
        ),
        Row(
            "2 direct",
            "textile itself, its cache warm (same)",
            None,
            warm.p(0.5),
            warm.p(0.99),
            warm.p(0.5) / cold.p(0.5) if cold.ms and warm.ms else None,
            "direct",
            detail=f"{warm_reads:.0f} registry reads",
        ),
    ]
    return values


def write_requests(path: Path, handles: Sequence[str]) -> None:
    """udpblast's request file: the handles in turn, REQUEST_LINES lines."""
    lines = [resolution_request(handles[i % len(handles)]).hex() for i in range(REQUEST_LINES)]
    path.write_text("\n".join(lines) + "\n")


@dataclass
class Blasted:
    result: BlastResult
    before: Samples  # the elevator's metrics after the warm-up
    after: Samples
    cpu_us: dict[str, float]  # per reply in the measured run


def blast(plan: Plan, elevator: NodeProcess, requests: Path) -> Blasted:
    cpu = LOADER_CPU if plan.pin else None
    if plan.warmup > 0:
        run_udpblast(plan.blast, elevator.handle_port, requests, plan.warmup, plan.window, cpu)
    parties = {
        "elevator": lambda: cpu_seconds([elevator.pid]),
        "udpblast": children_cpu_seconds,
    }
    before = scrape(elevator.admin_port)
    cpu0 = {k: read() for k, read in parties.items()}
    result = run_udpblast(
        plan.blast, elevator.handle_port, requests, plan.seconds, plan.window, cpu
    )
    cpu_us = {k: 1e6 * (read() - cpu0[k]) / max(1, result.replies) for k, read in parties.items()}
    return Blasted(result, before, scrape(elevator.admin_port), cpu_us)


def warm_rows(members: Mapping[str, Member], plan: Plan, values: int, out: Outcome) -> None:
    """Rows 3 and 4: the same udpblast load on the elevator, for cached foreign rolls,
    then for its own records."""
    elevator = members[ELEVATOR].up
    foreign = [SILK.handle(HOT + i) for i in range(plan.hot)]
    local = [LIFTS.handle(HOT + i) for i in range(plan.hot)]
    fetched = run_async(ask_each(elevator.handle_port, foreign, values))
    own = run_async(ask_each(elevator.handle_port, local, values))
    for name, asked in (("foreign hot set", fetched), ("local hot set", own)):
        if asked.problems:
            out.warn(f"{name}: {len(asked.problems)} asks failed, e.g. {asked.problems[0]}")
    sizes = {
        "foreign": (fetched.reply_bytes, fetched.datagrams),
        "local": (own.reply_bytes, own.datagrams),
    }
    measured: dict[str, Blasted] = {}
    for kind, handles in (("foreign", foreign), ("local", local)):
        requests = OUT / f"forwarding_{kind}_requests.hex"
        write_requests(requests, handles)
        progress(
            f"row {3 if kind == 'foreign' else 4}: udpblast on the elevator, {plan.hot} "
            f"{kind} handles, window {plan.window}, {plan.warmup:g} s warm-up + {plan.seconds:g} s"
        )
        measured[kind] = b = blast(plan, elevator, requests)
        rcs = by_label(
            b.before, b.after, "idnode_requests_total", "rc", front="udp", op="resolution"
        )
        other = {rc: k for rc, k in rcs.items() if rc != "1"}
        if other:
            out.warn(f"{kind} run: replies other than RC 1: {other}")
        dropped = by_label(b.before, b.after, "idnode_dropped_requests_total", "reason")
        if dropped:
            out.notes.append(f"{kind} run: the elevator dropped {dict(dropped)}")
        lost = b.result.lost
        if lost:
            share = lost / max(1, lost + b.result.replies)
            severity = "WARNING" if share > 0.001 or lost > plan.window else "note"
            text = f"{kind} run: udpblast lost {lost} requests ({100 * share:.3f}%)"
            (out.problems if severity == "WARNING" else out.notes).append(f"{severity}: {text}")
    f, loc = measured["foreign"], measured["local"]
    refetched = delta(f.before, f.after, EXCHANGES)
    if refetched:
        out.notes.append(
            f"row 3: the elevator went upstream {refetched:.0f} times in the measured run "
            "(a cached roll expired?)"
        )
    ratio = f.result.rate / loc.result.rate if loc.result.rate else None
    for bench, kind, b in (("3 warm fwd", "foreign", f), ("4 local", "local", loc)):
        hits = delta(b.before, b.after, "idnode_cache_hits_total", front="udp")
        misses = delta(b.before, b.after, "idnode_cache_misses_total", front="udp")
        size, grams = sizes[kind]
        cpu = " + ".join(f"{k} {v:.0f}" for k, v in b.cpu_us.items())
        target = (
            f"elevator: {plan.hot} cached 88.118 rolls"
            if kind == "foreign"
            else f"elevator: {plan.hot} own 88.119 records"
        )
        out.rows.append(
            Row(
                bench,
                target,
                b.result.rate,
                b.result.p50_ms,
                b.result.p99_ms,
                ratio if kind == "foreign" else 1.0,
                "local",
                detail=f"hits {100 * hits / max(1.0, hits + misses):.1f}%, lost {b.result.lost}, "
                f"reply {size} B / {grams} dgrams; µs/reply {cpu}",
            )
        )


def single_flight(members: Mapping[str, Member], plan: Plan, out: Outcome) -> None:
    """Row 5: ``plan.concurrent`` requests at once for one roll nobody has asked for."""
    elevator = members[ELEVATOR].up
    handle = SILK.handle(FLIGHT)
    progress(f"row 5: {plan.concurrent} concurrent requests for {handle} at the elevator")
    s0 = scrapes(members)
    result = run_async(burst(elevator.handle_port, handle, plan.concurrent))
    s1 = scrapes(members)
    textile_saw = resolved_ok(s0.textile, s1.textile)
    exchanges = delta(s0.elevator, s1.elevator, EXCHANGES)
    joins = delta(s0.elevator, s1.elevator, "idnode_cache_single_flight_joins_total")
    hits = delta(s0.elevator, s1.elevator, "idnode_cache_hits_total", front="udp")
    elevator_ok = int(
        delta(
            s0.elevator, s1.elevator, "idnode_requests_total", front="udp", op="resolution", rc="1"
        )
    )
    if result.rcs.get(1, 0) != result.sent:
        out.warn(f"row 5: {result.sent} sent, replies by RC {dict(result.rcs)}")
    for problem in result.problems[:3]:
        out.warn(f"row 5: {problem}")
    _expect(out, "row 5: the elevator's UDP resolutions RC 1", elevator_ok, result.rcs.get(1, 0))
    if exchanges != textile_saw:
        out.warn(
            f"row 5: the elevator counted {exchanges:g} upstream exchanges, the textile "
            f"{textile_saw} queries"
        )
    factor = result.sent / textile_saw if textile_saw else None
    if textile_saw == 0:
        out.warn("row 5: the textile node saw no query: the roll was cached already?")
    out.rows.append(
        Row(
            "5 single fl.",
            f"{result.sent} at once, 1 uncached roll",
            None,
            quantile(result.ms, 0.5),
            quantile(result.ms, 0.99),
            factor,
            "x",
            detail=f"textile answered {textile_saw}, elevator {exchanges:.0f} upstream "
            f"exchanges; {joins:.0f} joined the flight, {hits:.0f} cache hits; answered "
            f"{result.answered} in {result.rounds} round(s)",
        )
    )


# -- reporting -------------------------------------------------------------------------------

_HEAD = (
    f"{'row':<13}{'target':<42}{'per s':>8}{'p50 ms':>9}{'p99 ms':>9}{'ratio':>9} {'of':<7}detail"
)


def _num(value: float | None, spec: str) -> str:
    if value is None or value != value:  # None or NaN
        return "-"
    return format(value, spec)


def _ratio(value: float | None) -> str:
    if value is None or value != value:
        return "-"
    return f"{value:.0f}" if value >= 100 else f"{value:.2f}"


def format_table(rows: Iterable[Row]) -> list[str]:
    out = [_HEAD, "-" * len(_HEAD)]
    last = None
    for r in rows:
        bench = r.bench if r.bench != last else ""
        last = r.bench
        out.append(
            f"{bench:<13}{r.target:<42}{_num(r.rate, '.0f'):>8}{_num(r.p50_ms, '.2f'):>9}"
            f"{_num(r.p99_ms, '.2f'):>9}{_ratio(r.ratio):>9} {r.ratio_of:<7}{r.detail}".rstrip()
        )
    return out


def footer(plan: Plan) -> list[str]:
    return [
        "# 1 cold fwd: native UDP asks (NativeClient, RECU|CACR|PUBL) at the elevator (88.119) for "
        "textile rolls it never saw, one at a time, from loopback (recursion allowed). The first "
        "locates 0.NA/88.118 through the top; the rest go straight to the textile node, each a "
        "miss there too, and each record's signature is checked against the trust bundle. "
        "ratio = p50 / row 2 cold p50",
        f"# 2 direct: the same client asks the textile node (88.118) for {plan.samples} other new "
        "rolls, its cache cold (one registry read each): the base of row 1; then the same rolls "
        "again, its cache warm (ratio = warm p50 / cold p50)",
        f"# 3 warm fwd: udpblast, window {plan.window}, {plan.warmup:g} s warm-up + {plan.seconds:g} "
        f"s, cycling {plan.hot} textile rolls the elevator has cached (fetched once before); "
        "ratio = row 3 replies/s / row 4",
        f"# 4 local: the same load, settings and record shape for {plan.hot} of the elevator's "
        "own records (88.119.2/LIFT-*, the same values, signed by the elevator): its local "
        "cache-hit rate, the ceiling for row 3",
        f"# 5 single fl.: {plan.concurrent} resolution requests for one roll nobody asked "
        "for, written back to back from one UDP socket to the elevator; ratio = requests / "
        "queries the textile node answered (its idnode_requests_total, op resolution, RC 1); "
        "p50/p99 per request, from its send to its whole reply",
    ]


@dataclass
class Report:
    run_at: str
    busy_before: float
    registry: str
    args: argparse.Namespace
    outcome: Outcome
    values: int

    def pinned(self) -> str:
        if not self.args.pin:
            return "no"
        return f"yes (elevator CPU {SERVER_CPU}; top, textile, PostgreSQL, load CPU {LOADER_CPU})"

    def lines(self, plan: Plan) -> list[str]:
        a = self.args
        out = [
            f"# {self.run_at}  nproc={os.cpu_count()}  python={platform.python_version()}  "
            f"client loop={loop_kind()}  pinned={self.pinned()}  "
            f"busy before start={100 * self.busy_before:.0f}% of all CPUs",
            f"# samples={a.samples}  hot={a.hot}  window={a.window}  seconds={a.seconds:g} "
            f"(after {a.warmup:g} s warm-up)  concurrent={a.concurrent}  record={self.values} "
            f"values ({len(Records(a.fields).values(SILK, 0))} written + the node's HS_SIGNATURE)  registry={self.registry}",
            *format_table(self.outcome.rows),
            *footer(plan),
        ]
        if self.busy_before > BUSY_NOTE:
            out.append(
                f"# note: {100 * self.busy_before:.0f}% of the CPUs were busy before the start: "
                "other work shares the cores and every figure is low; rerun when quiet"
            )
        out += [f"# {n}" for n in self.outcome.notes]
        out += [f"# {p}" for p in self.outcome.problems]
        return out

    def settings(self) -> str:
        a = self.args
        return (
            f"samples={a.samples} hot={a.hot} window={a.window} seconds={a.seconds:g} "
            f"warmup={a.warmup:g} concurrent={a.concurrent} fields={a.fields} "
            f"pinned={int(a.pin)} registry={self.registry} nproc={os.cpu_count()} "
            f"python={platform.python_version()} busy_before={self.busy_before:.3f}"
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=200, help="cold asks in rows 1 and 2")
    p.add_argument("--seconds", type=float, default=10.0, help="measured udpblast run, rows 3, 4")
    p.add_argument("--warmup", type=float, default=2.0, help="discarded run before each")
    p.add_argument("--hot", type=int, default=64, help="distinct handles in rows 3 and 4")
    p.add_argument("--window", type=int, default=64, help="requests udpblast keeps in flight")
    p.add_argument("--concurrent", type=int, default=1000, help="requests at once in row 5")
    p.add_argument(
        "--fields", type=int, default=8, help=f"roll fields per record (0..{MAX_FIELDS}; +3 values)"
    )
    p.add_argument(
        "--pin",
        action="store_true",
        help=f"elevator on CPU {SERVER_CPU}; the other nodes, PostgreSQL, udpblast and the "
        f"clients on CPU {LOADER_CPU}",
    )
    p.add_argument(
        "--database-url",
        help="an existing PostgreSQL server: three scratch databases are created on it "
        "(the URL's user needs CREATEDB) and dropped after",
    )
    p.add_argument("--udpblast-src", type=Path, default=DEFAULT_UDPBLAST_SRC)
    args = p.parse_args(argv)
    if not 1 <= args.samples <= MAX_SAMPLES:
        p.error(f"--samples 1..{MAX_SAMPLES}")
    if not 1 <= args.hot <= MAX_SAMPLES or not 1 <= args.concurrent <= 60_000:
        p.error(f"--hot 1..{MAX_SAMPLES}, --concurrent 1..60000")
    if args.seconds <= 0 or args.warmup < 0 or not 1 <= args.window <= 4096:
        p.error("--seconds > 0, --warmup >= 0, --window 1..4096")
    if not 0 <= args.fields <= MAX_FIELDS:
        p.error(f"--fields 0..{MAX_FIELDS}")
    return args


def run(args: argparse.Namespace, stack: ExitStack) -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    run_at = datetime.now(UTC).isoformat(timespec="seconds")
    progress("building udpblast; measuring how busy the machine is ...")
    binary = build_udpblast(args.udpblast_src, OUT / "udpblast")
    busy_before = machine_busy()
    if args.pin:
        if (os.cpu_count() or 1) < 2:
            raise BenchError("--pin needs at least 2 CPUs")
        os.sched_setaffinity(0, {LOADER_CPU})  # this process (the clients) and the CLI runs

    tag = run_tag()
    names = {n: f"idnode_bench_fwd_{tag}_{n}" for n in (TOP, TEXTILE, ELEVATOR)}
    if args.database_url:
        registry = "external PostgreSQL, 3 scratch databases"
        admin_dsn = args.database_url
        asyncio.run(create_databases(admin_dsn, list(names.values())))
        stack.callback(lambda: asyncio.run(drop_databases(admin_dsn, list(names.values()))))

        def dsn_of(node: str) -> str:
            return with_database(admin_dsn, names[node])
    else:
        registry = "embedded PostgreSQL, 3 databases"
        progress("starting embedded PostgreSQL ...")
        server = stack.enter_context(embedded_registry())
        postmaster = server.postmaster_pid()
        if args.pin and postmaster is not None:
            for pid in process_tree(postmaster):
                os.sched_setaffinity(pid, {LOADER_CPU})
        asyncio.run(create_databases(server.dsn, list(names.values())))

        def dsn_of(node: str) -> str:
            return server.dsn_for(names[node])

    base = Path(tempfile.mkdtemp(prefix="idnode-bench-fwd-"))
    stack.callback(shutil.rmtree, base, ignore_errors=True)
    members = build_tree(stack, dsn_of, base, args.pin)
    progress(
        "ports: "
        + ", ".join(
            f"{n} native {m.up.handle_port} http {m.up.http_port} metrics {m.up.admin_port}"
            for n, m in members.items()
        )
    )

    plan = Plan(
        args.samples,
        args.hot,
        args.concurrent,
        args.seconds,
        args.warmup,
        args.window,
        args.fields,
        args.pin,
        binary,
    )
    records = Records(args.fields)
    rolls = [
        *(COLD + i for i in range(plan.samples + 1)),
        *(DIRECT + i for i in range(plan.samples)),
        *(HOT + i for i in range(plan.hot)),
        FLIGHT,
    ]
    progress(f"creating {len(rolls)} rolls on the textile node, {plan.hot} records on the elevator")
    made = run_async(create_records(members[TEXTILE].up.http_port, SILK, rolls, records))
    lifts = [HOT + i for i in range(plan.hot)]
    made += run_async(create_records(members[ELEVATOR].up.http_port, LIFTS, lifts, records))
    outcome = Outcome()
    progress(f"{made} records created; rows 1 and 2: {plan.samples} cold asks each ...")
    values = cold_and_direct(members, plan, outcome)
    warm_rows(members, plan, values, outcome)
    single_flight(members, plan, outcome)
    for name in (TOP, TEXTILE, ELEVATOR):
        members[name].up.stop()

    report = Report(run_at, busy_before, registry, args, outcome, values)
    print()
    for line in report.lines(plan):
        print(line)
    append_csv(CSV_PATH, run_at, report.settings(), outcome.rows)
    return 1 if outcome.problems else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_bench("forwarding", lambda stack: run(args, stack))


if __name__ == "__main__":
    sys.exit(main())
