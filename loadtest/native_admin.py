"""Native Handle administration throughput of a real ``idnode serve --demo`` process, side
by side with the same creates over the REST API with HTTP Basic, measured in one run.
Prints one table; appends it to loadtest/out/native_admin.csv.

    .venv/bin/python loadtest/native_admin.py [--seconds 8] [--warmup 2] [--clients 8] [--pin]
        [--fields 8] [--login-key ec|rsa] [--database-url URL]

Rows, each a closed loop of ``--clients`` concurrent clients (a warm-up, discarded, then
``--seconds`` measured), every create a new handle under the silk mill's prefix 88.118.2
as its admin ``300:88.118.2/ADMIN`` (node.demo.dataset):

1. native CREATE_HANDLE through ``node.client.admin.AdminClient(session=True)``, one TCP
   connection and one Diffie-Hellman session per client: the setup and the first,
   challenged, create fall in the warm-up; every measured create is MACed only;
2. the same without a session: every create is challenged (402), answered (opcode 200,
   the HS_SECKEY PBKDF2-HMAC-SHA1 form of message version 2.11) and then run;
3. the same creates as ``PUT /api/handles/{h}?overwrite=false`` with Basic credentials,
   aiohttp keep-alive, one connection per client: the comparison row;
4. IDIS logins (opcode 2001 LOGIN_ID_SYSTEM) of an HS_PUBKEY identity the run creates over
   HTTP (PEM text): each on a new TCP connection, 402 with opcode 2001, the signed answer,
   RC 1 with opcode 2001, close.

"vs http" is each row's rate over row 3's. Afterwards the node's own counters and the
registry must agree with the client: as many handles per row as creates acknowledged, one
402 per client in row 1, one per create in row 2, one per login in row 4.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import importlib.util
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable as a plain script

import aiohttp
import asyncpg
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from loadtest.harness import (
    OUT,
    BenchError,
    cpu_seconds,
    machine_busy,
    process_tree,
    run_bench,
    scrape,
    start_idnode,
)
from loadtest.lag import basic_auth, quantile
from loadtest.rolls import MAX_FIELDS, RollRecords, as_written, embedded_registry
from node.client.admin import AdminClient, AdminError, Credentials
from node.client.native import ClientError
from node.demo.dataset import SILK_MILL
from protocol.challenge import PBKDF2_ITERATIONS, SeckeyForm, make_seckey_answer
from protocol.codes import OpCode, ResponseCode
from protocol.idis import LoginIdSystemRequest
from protocol.jsonvalues import values_to_json
from protocol.message import NO_FLAGS, Header, Version
from protocol.msgsign import SiteKey
from protocol.values import HandleValue

PREFIX = "88.118.2"
ADMIN = "300:88.118.2/ADMIN"  # the silk mill's admin in the demo data
ADMIN_HANDLE, ADMIN_INDEX = "88.118.2/ADMIN", 300
LOGIN_INDEX = 300  # the HS_PUBKEY of the login identity
ADMIN_VERSION: Version = (2, 11)  # AdminClient's default: PBKDF2 answers
LOGIN_VERSION: Version = (2, 10)  # what the IDIS SDKs suggest
TRACE_SITE = "https://trace.example.com/h/"
OP_TIMEOUT_S = 10.0
ERROR_PAUSE_S = 0.01  # after a failed operation: no hot loop on a persistent refusal
SERVER_CPU, LOADER_CPU = 1, 0
BUSY_NOTE = 0.1  # share of all CPUs busy before the start above which the report says so
CSV_PATH = OUT / "native_admin.csv"
CSV_FIELDS = (
    "run_at",
    "row",
    "target",
    "ops_per_s",
    "p50_ms",
    "p99_ms",
    "measured_ops",
    "ok_ops",
    "errors",
    "vs_http",
    "cpu_ms_per_op",
    "clients",
    "seconds",
    "warmup",
    "fields",
    "login_key",
    "pinned",
    "registry",
    "nproc",
    "python",
    "loop",
    "busy_before",
)
# Row keys, also the tag in every handle name the row creates (no '_' or '%': LIKE-safe).
SESSION, CHALLENGED, HTTP, LOGIN = "S", "C", "H", "L"
TARGETS = {
    SESSION: "native create, DH session (MACed)",
    CHALLENGED: "native create, no session (402+200)",
    HTTP: "HTTP PUT create, Basic (aiohttp)",
    LOGIN: "native login 2001 HS_PUBKEY, new conn",
}


# -- what is created -----------------------------------------------------------------


def run_tag() -> str:
    """Distinct per run (base 36 of the time in ms): repeated runs on one registry never
    collide."""
    n, digits = int(time.time() * 1000), ""
    while n:
        n, d = divmod(n, 36)
        digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"[d] + digits
    return digits


def handle_name(run: str, row: str, client: int, n: int) -> str:
    return f"{PREFIX}/NATADM-{run}-{row}-{client:03d}-{n:06d}"


def row_pattern(run: str, row: str) -> str:
    """SQL LIKE pattern of every handle a row created."""
    return f"{PREFIX}/NATADM-{run}-{row}-%"


def login_handle(run: str) -> str:
    return f"{PREFIX}/NATADM-{run}-LOGIN"


class Records:
    """The record every create writes: URL (1), HS_ADMIN (100, the silk mill's admin),
    TEMPLATE (1001) and the first ``fields`` greige-roll fields (2000+), as the demo's
    rolls; only the URL differs from handle to handle."""

    def __init__(self, fields: int):
        self.fields = fields
        self._rest = tuple(as_written(RollRecords(fields, int(time.time())).values(0))[1:])

    def values(self, handle: str) -> tuple[HandleValue, ...]:
        url = HandleValue(
            1, "URL", (TRACE_SITE + handle).encode(), timestamp=self._rest[0].timestamp
        )
        return (url, *self._rest)

    def json(self, handle: str) -> bytes:
        return orjson.dumps(values_to_json(self.values(handle)))


# -- where, and as whom ----------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A node to measure, and the enterprise admin's credentials on it."""

    host: str
    handle_port: int
    http_port: int
    secret: str = SILK_MILL.admin_secret

    @property
    def admin(self) -> Credentials:
        return Credentials(ADMIN_HANDLE, ADMIN_INDEX, secret=self.secret.encode())

    @property
    def basic(self) -> dict[str, str]:
        return {"Authorization": basic_auth(ADMIN, self.secret)}

    def url(self, handle: str) -> str:
        return f"http://{self.host}:{self.http_port}/api/handles/{quote(handle, safe='/')}"


KEY_NAMES = {"ec": "ECDSA P-256", "rsa": "RSA 2048"}


def new_login_key(kind: str) -> SiteKey:
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    raise ValueError(f"login key kind {kind!r}: ec or rsa")


def public_pem(key: SiteKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )


class HttpRefused(Exception):
    def __init__(self, status: int, body: bytes):
        super().__init__(f"HTTP {status}: {body[:200]!r}")
        self.status = status


async def create_login_identity(
    http: aiohttp.ClientSession, target: Target, handle: str, key: SiteKey
) -> None:
    """``handle`` with the key's public half as PEM text at HS_PUBKEY 300 and the silk
    mill's HS_ADMIN, PUT over the REST API with the admin's Basic credentials."""
    admin = {"handle": ADMIN_HANDLE, "index": ADMIN_INDEX, "permissions": "111111111111"}
    values = [
        {
            "index": LOGIN_INDEX,
            "type": "HS_PUBKEY",
            "data": {"format": "string", "value": public_pem(key)},
        },
        {"index": 100, "type": "HS_ADMIN", "data": {"format": "admin", "value": admin}},
    ]
    async with http.put(
        target.url(handle) + "?overwrite=false", json=values, headers=target.basic
    ) as r:
        if r.status != 201:
            raise HttpRefused(r.status, await r.read())


# -- the operations ---------------------------------------------------------------------


async def http_create(
    http: aiohttp.ClientSession, target: Target, handle: str, body: bytes
) -> None:
    async with http.put(
        target.url(handle) + "?overwrite=false",
        data=body,
        headers={**target.basic, "Content-Type": "application/json"},
    ) as r:
        payload = await r.read()
        if r.status != 201:
            raise HttpRefused(r.status, payload)


async def login_once(target: Target, creds: Credentials, *, again: bool = False) -> None:
    """One IDIS login (opcode 2001) on a new TCP connection, closed after: the 402 must
    carry opcode 2001, and so must the RC 1 that follows the answer. ``again``: then
    log in once more on the same connection, which must succeed unchallenged (the login
    belongs to the connection)."""
    client = AdminClient(target.host, target.handle_port, creds, version=LOGIN_VERSION)
    body = LoginIdSystemRequest(creds.handle, creds.index)
    try:
        request = client._request(OpCode.LOGIN_ID_SYSTEM, body, NO_FLAGS)
        [challenge] = await client._exchange(request)
        _expect(challenge.header, ResponseCode.AUTHENTICATION_NEEDED, "login")
        [reply] = await client._exchange(client._answer(request, challenge))
        _expect(reply.header, ResponseCode.SUCCESS, "login answer")
        if again:
            [reply] = await client._exchange(
                client._request(OpCode.LOGIN_ID_SYSTEM, body, NO_FLAGS)
            )
            _expect(reply.header, ResponseCode.SUCCESS, "second login on a logged-in connection")
    finally:
        await client.close()


def _expect(header: Header, rc: ResponseCode, what: str) -> None:
    if header.response_code != rc or header.opcode != OpCode.LOGIN_ID_SYSTEM:
        raise AdminError(
            header.response_code,
            f"{what}: wanted RC {int(rc)} with opcode 2001, got opcode {header.opcode}",
        )


def pbkdf2_answer_ms(rounds: int = 20) -> float:
    """CPU ms of one 0x22 secret-key answer (PBKDF2-HMAC-SHA1, the reference client's
    iteration count) on this machine: what each side spends per create in row 2."""
    key, nonce, digest = SILK_MILL.admin_secret.encode(), bytes(16), bytes(32)
    started = time.process_time()
    for _ in range(rounds):
        make_seckey_answer(key, nonce, digest, SeckeyForm.PBKDF2_HMAC_SHA1)
    return 1000 * (time.process_time() - started) / rounds


# -- the closed loop --------------------------------------------------------------------

Op = Callable[[int, int], Awaitable[None]]  # (client number, its n-th operation)
CpuReader = Callable[[], float]


def client_cpu_seconds() -> float:
    """CPU time of this process (the load: every client, every thread)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Tally:
    row: str
    clients: int
    seconds: float
    ok: int = 0  # operations that succeeded, warm-up and the tail after the window included
    latencies_s: list[float] = field(default_factory=list)  # those completed in the window
    errors: Counter[str] = field(default_factory=Counter)
    cpu_s: dict[str, float] = field(default_factory=dict)  # per party, in the window
    first: str = ""  # a handle the row created (to look at afterwards)

    @property
    def target(self) -> str:
        return TARGETS[self.row]

    @property
    def measured(self) -> int:
        return len(self.latencies_s)

    @property
    def rate(self) -> float:
        return self.measured / self.seconds if self.seconds > 0 else float("nan")

    def ms(self, q: float) -> float:
        return 1000 * quantile(self.latencies_s, q)

    def cpu_text(self) -> str:
        n = max(1, self.measured)
        return " + ".join(f"{k} {1000 * v / n:.2f}" for k, v in self.cpu_s.items())


def _why(exc: BaseException) -> str:
    if isinstance(exc, AdminError):
        return f"RC {exc.response_code}"
    if isinstance(exc, HttpRefused):
        return f"HTTP {exc.status}"
    if isinstance(exc, TimeoutError):
        return "timeout"
    return type(exc).__name__


async def closed_loop(
    row: str,
    op: Op,
    clients: int,
    warmup_s: float,
    seconds: float,
    parties: Mapping[str, CpuReader] | None = None,
) -> Tally:
    """``clients`` loops calling ``op`` back to back: a warm-up, then ``seconds`` in which
    completions count (rate, latency) and each party's CPU time is read at both ends.
    Operations in flight at the end finish (and count in ``ok``) but not in the rate."""
    tally = Tally(row, clients, seconds)
    start = time.perf_counter() + warmup_s
    end = start + seconds

    async def client(c: int) -> None:
        n = 0
        while (t0 := time.perf_counter()) < end:
            try:
                await asyncio.wait_for(op(c, n), OP_TIMEOUT_S)
            except (ClientError, HttpRefused, aiohttp.ClientError, OSError, TimeoutError) as exc:
                tally.errors[_why(exc)] += 1
                await asyncio.sleep(ERROR_PAUSE_S)
            else:
                t1 = time.perf_counter()
                tally.ok += 1
                if start <= t1 < end:
                    tally.latencies_s.append(t1 - t0)
            n += 1

    async def cpu_window() -> None:
        readers = dict(parties or {})
        await asyncio.sleep(max(0.0, start - time.perf_counter()))
        before = {k: read() for k, read in readers.items()}
        await asyncio.sleep(max(0.0, end - time.perf_counter()))
        tally.cpu_s = {k: read() - before[k] for k, read in readers.items()}

    await asyncio.gather(cpu_window(), *(client(c) for c in range(clients)))
    return tally


# -- the four rows --------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    target: Target
    run: str
    clients: int
    warmup_s: float
    seconds: float
    records: Records
    parties: Mapping[str, CpuReader] = field(default_factory=dict)


async def native_creates(plan: Plan, *, session: bool) -> Tally:
    """Row 1 (``session``) or 2: creates through one AdminClient per client."""
    row = SESSION if session else CHALLENGED
    admins = [
        AdminClient(
            plan.target.host,
            plan.target.handle_port,
            plan.target.admin,
            session=session,
            version=ADMIN_VERSION,
        )
        for _ in range(plan.clients)
    ]

    async def op(c: int, n: int) -> None:
        handle = handle_name(plan.run, row, c, n)
        await admins[c].create(handle, plan.records.values(handle))

    try:
        tally = await closed_loop(row, op, plan.clients, plan.warmup_s, plan.seconds, plan.parties)
    finally:
        await asyncio.gather(*(a.close() for a in admins))
    tally.first = handle_name(plan.run, row, 0, 0)
    return tally


async def http_creates(plan: Plan, http: aiohttp.ClientSession) -> Tally:
    """Row 3: the same creates as PUTs (``overwrite=false``: 201 or a refusal)."""

    async def op(c: int, n: int) -> None:
        handle = handle_name(plan.run, HTTP, c, n)
        await http_create(http, plan.target, handle, plan.records.json(handle))

    tally = await closed_loop(HTTP, op, plan.clients, plan.warmup_s, plan.seconds, plan.parties)
    tally.first = handle_name(plan.run, HTTP, 0, 0)
    return tally


async def logins(plan: Plan, creds: Credentials) -> Tally:
    """Row 4: IDIS logins, each on a connection of its own."""

    async def op(c: int, n: int) -> None:
        await login_once(plan.target, creds)

    return await closed_loop(LOGIN, op, plan.clients, plan.warmup_s, plan.seconds, plan.parties)


def http_session(clients: int) -> aiohttp.ClientSession:
    # One keep-alive connection per client, as each native client keeps its own.
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients))


# -- what the node and the registry say ----------------------------------------------------


async def count_created(dsn: str, pattern: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        count = await conn.fetchval("SELECT count(*) FROM handles WHERE handle LIKE $1", pattern)
    finally:
        await conn.close()
    return int(count)


async def is_signed(http: aiohttp.ClientSession, target: Target, handle: str) -> bool:
    """The record as the node serves it carries the node's HS_SIGNATURE."""
    async with http.get(target.url(handle)) as r:
        if r.status != 200:
            return False
        body = await r.json()
    return any(v.get("type") == "HS_SIGNATURE" for v in body.get("values", []))


Counts = Counter[tuple[str, str]]  # (op, rc) -> requests the native TCP front counted


def tcp_counts(before: Mapping, after: Mapping) -> Counts:  # type: ignore[type-arg]
    """Native TCP requests by (op, RC) between two ``harness.scrape`` readings."""
    out: Counts = Counter()
    for (name, labels), value in after.items():
        lab = dict(labels)
        if name != "idnode_requests_total" or lab.get("front") != "tcp":
            continue
        delta = int(value - before.get((name, labels), 0.0))
        if delta:
            out[(lab["op"], lab["rc"])] += delta
    return out


def check_counts(tally: Tally, counts: Counts) -> tuple[str, list[str]]:
    """What the node counted for a native row, and the problems (the client and the node
    must agree on how many were created / challenged / logged in)."""
    op = "login_id_system" if tally.row == LOGIN else "create_handle"
    ok, challenged = counts[(op, "1")], counts[(op, "402")]
    problems = []
    if ok != tally.ok:
        problems.append(f"{op} RC 1 counted by the node {ok} != {tally.ok} acknowledged")
    want = {SESSION: tally.clients, CHALLENGED: tally.ok, LOGIN: tally.ok}[tally.row]
    if tally.row == SESSION:
        setups = counts[("session_setup", "1")]
        if setups != tally.clients:
            problems.append(f"{setups} session setups, not one per client ({tally.clients})")
    if challenged != want:
        problems.append(f"{challenged} challenges (402), expected {want}")
    others = {k: v for k, v in counts.items() if k[1] not in ("1", "402")}
    if others:
        problems.append(f"other replies {dict(others)}")
    text = f"{op}: RC 402 x{challenged}, RC 1 x{ok}"
    if tally.row == SESSION:
        text = f"session_setup x{counts[('session_setup', '1')]}, " + text
    return text, problems


# -- the run ----------------------------------------------------------------------------------


@dataclass
class Outcome:
    rows: list[Tally]
    notes: list[str]
    problems: list[str]


def _row_problems(tally: Tally) -> list[str]:
    out = []
    if tally.errors:
        out.append(
            f"WARNING: {tally.target}: {sum(tally.errors.values())} failed: {dict(tally.errors)}"
        )
    if tally.measured == 0:
        out.append(f"WARNING: {tally.target}: nothing completed in the measured window")
    return out


async def measure_all(plan: Plan, dsn: str, admin_port: int, login_key: SiteKey) -> Outcome:
    target, notes, problems = plan.target, [], []
    rows: list[Tally] = []
    say = progress

    async def metrics() -> dict:  # type: ignore[type-arg]
        return await asyncio.to_thread(scrape, admin_port)

    async with http_session(plan.clients) as http:
        login = Credentials(login_handle(plan.run), LOGIN_INDEX, private_key=login_key)
        await create_login_identity(http, target, login.handle, login_key)
        await login_once(target, login, again=True)
        say(f"login identity {LOGIN_INDEX}:{login.handle} created over HTTP; a login works")

        for row in (SESSION, CHALLENGED, HTTP, LOGIN):
            say(
                f"row {TARGETS[row]!r}: {plan.clients} clients, {plan.warmup_s:g} s warm-up + {plan.seconds:g} s ..."
            )
            before = await metrics()
            if row == HTTP:
                tally = await http_creates(plan, http)
            elif row == LOGIN:
                tally = await logins(plan, login)
            else:
                tally = await native_creates(plan, session=row == SESSION)
            after = await metrics()
            rows.append(tally)
            problems += _row_problems(tally)
            if row != HTTP:
                counted, wrong = check_counts(tally, tcp_counts(before, after))
                notes.append(f"node counted, row {len(rows)}: {counted}")
                problems += [f"WARNING: row {len(rows)}: {p}" for p in wrong]
            if row != LOGIN:
                held = await count_created(dsn, row_pattern(plan.run, row))
                if held != tally.ok:
                    problems.append(
                        f"WARNING: row {len(rows)}: the registry holds {held} handles, "
                        f"{tally.ok} creates were acknowledged"
                    )
                if tally.ok and not await is_signed(http, target, tally.first):
                    problems.append(
                        f"WARNING: row {len(rows)}: {tally.first} is not served with an "
                        "HS_SIGNATURE"
                    )
            say(
                f"  {tally.measured / plan.seconds:.0f}/s, {tally.ok} in all, errors {dict(tally.errors)}"
            )
        created = {r.row: r.ok for r in rows if r.row != LOGIN}
        notes.append(
            "registry holds every acknowledged create, and each row's first record carries "
            f"the node's HS_SIGNATURE (checked): {created}"
        )
    return Outcome(rows, notes, problems)


def progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# -- reporting ---------------------------------------------------------------------------------

_HEAD = (
    f"{'row':<4}{'target':<40}{'ops/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'ops':>7}"
    f"{'errors':>8}{'vs http':>9}  CPU ms/op"
)


def vs_http(rows: list[Tally], tally: Tally) -> float:
    http = next((r for r in rows if r.row == HTTP), None)
    if http is None or not http.rate:
        return float("nan")
    return tally.rate / http.rate


def table(rows: list[Tally]) -> list[str]:
    out = [_HEAD]
    for i, r in enumerate(rows, 1):
        out.append(
            f"{i:<4}{r.target:<40}{r.rate:>8.0f}{r.ms(0.5):>9.2f}{r.ms(0.99):>9.2f}"
            f"{r.measured:>7d}{sum(r.errors.values()):>8d}{vs_http(rows, r):>9.2f}  {r.cpu_text()}"
        )
    return out


def loop_kind() -> str:
    return "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"


def new_loop() -> asyncio.AbstractEventLoop:
    if importlib.util.find_spec("uvloop"):
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


@dataclass
class Report:
    run_at: str
    busy_before: float
    registry: str
    args: argparse.Namespace
    outcome: Outcome
    pbkdf2_ms: float

    def pinned(self) -> str:
        if not self.args.pin:
            return "no"
        beside = " + embedded PostgreSQL" if self.registry == "embedded" else ""
        return f"yes (node CPU {SERVER_CPU}, clients{beside} CPU {LOADER_CPU})"

    def lines(self) -> list[str]:
        a = self.args
        rows = self.outcome.rows
        out = [
            f"# {self.run_at}  nproc={os.cpu_count()}  python={platform.python_version()}  "
            f"client loop={loop_kind()}  pinned={self.pinned()}  "
            f"busy before start={100 * self.busy_before:.0f}% of all CPUs",
            f"# clients={a.clients} (each its own TCP connection)  seconds={a.seconds:g} "
            f"(after {a.warmup:g} s warm-up)  record={3 + a.fields} values  "
            f"registry={self.registry} PostgreSQL  as {ADMIN} (demo silk mill)",
            *table(rows),
            "# signing: every record created (rows 1-3) is signed by the node (sign_records "
            "on, an ES256 HS_SIGNATURE): its cost is part of every create figure, native and "
            "HTTP alike",
            "# vs http: the row's rate over row 3's, same run (row 4: logins vs HTTP creates)",
            "# row 1: one DH session per client, its setup and first (challenged) create "
            + ("in the warm-up" if a.warmup > 0 else "measured (no warm-up)")
            + "; then every create MACed only",
            f"# row 2: every create 402 + opcode-200 answer, HS_SECKEY form 0x22 "
            f"(PBKDF2-HMAC-SHA1, {PBKDF2_ITERATIONS} iterations, message version "
            f"{ADMIN_VERSION[0]}.{ADMIN_VERSION[1]}), one kept connection per client; one "
            f"such PBKDF2 costs {self.pbkdf2_ms:.1f} ms of CPU here, on each side",
            f"# row 3: PUT /api/handles/<h>?overwrite=false -> 201, Basic {ADMIN}, "
            "aiohttp keep-alive",
            f"# row 4: opcode 2001 at {LOGIN_VERSION[0]}.{LOGIN_VERSION[1]}, HS_PUBKEY "
            f"{KEY_NAMES[a.login_key]} (PEM text, created over HTTP), a new TCP connection "
            "per login",
            "# CPU ms/op: each process's CPU time in the measured window over the row's "
            "measured operations (client = this process: the load)",
        ]
        if self.busy_before > BUSY_NOTE:
            out.append(
                f"# note: {100 * self.busy_before:.0f}% of the CPUs were busy before the start: "
                "other work shares the cores and every figure is low; rerun when quiet"
            )
        out += [f"# {n}" for n in self.outcome.notes]
        out += [f"# {p}" for p in self.outcome.problems]
        return out

    def append_csv(self) -> None:
        a = self.args
        rows = self.outcome.rows
        new = not CSV_PATH.exists()
        with open(CSV_PATH, "a", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
            if new:
                writer.writeheader()
            for i, r in enumerate(rows, 1):
                writer.writerow(
                    {
                        "run_at": self.run_at,
                        "row": i,
                        "target": r.target,
                        "ops_per_s": round(r.rate, 1),
                        "p50_ms": round(r.ms(0.5), 3),
                        "p99_ms": round(r.ms(0.99), 3),
                        "measured_ops": r.measured,
                        "ok_ops": r.ok,
                        "errors": sum(r.errors.values()),
                        "vs_http": round(vs_http(rows, r), 3),
                        "cpu_ms_per_op": r.cpu_text(),
                        "clients": a.clients,
                        "seconds": a.seconds,
                        "warmup": a.warmup,
                        "fields": a.fields,
                        "login_key": a.login_key,
                        "pinned": int(a.pin),
                        "registry": self.registry,
                        "nproc": os.cpu_count(),
                        "python": platform.python_version(),
                        "loop": loop_kind(),
                        "busy_before": round(self.busy_before, 3),
                    }
                )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=8.0, help="measured time per row")
    p.add_argument("--warmup", type=float, default=2.0, help="discarded time before each row")
    p.add_argument("--clients", type=int, default=8, help="concurrent clients per row")
    p.add_argument(
        "--fields", type=int, default=8, help=f"roll fields per record (0..{MAX_FIELDS}; +3 values)"
    )
    p.add_argument(
        "--login-key", choices=("ec", "rsa"), default="ec", help="HS_PUBKEY of the login row"
    )
    p.add_argument(
        "--pin",
        action="store_true",
        help=f"node on CPU {SERVER_CPU}; clients and embedded PostgreSQL on CPU {LOADER_CPU}",
    )
    p.add_argument(
        "--database-url",
        help="an existing registry: the node starts on it with --demo (adding the demo data "
        "it lacks); the run adds 88.118.2/NATADM-<run>-* handles and leaves them",
    )
    p.add_argument(
        "--secret",
        default=SILK_MILL.admin_secret,
        help=f"HS_SECKEY of {ADMIN} (default: the demo's)",
    )
    args = p.parse_args(argv)
    if args.clients < 1 or args.seconds <= 0 or args.warmup < 0:
        p.error("--clients >= 1, --seconds > 0, --warmup >= 0")
    if not 0 <= args.fields <= MAX_FIELDS:
        p.error(f"--fields 0..{MAX_FIELDS}")
    return args


def run(args: argparse.Namespace, stack: ExitStack) -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    run_at = datetime.now(UTC).isoformat(timespec="seconds")
    busy_before = machine_busy()
    if args.pin and (os.cpu_count() or 1) < 2:
        raise BenchError("--pin needs at least 2 CPUs")
    server_cpu = SERVER_CPU if args.pin else None

    parties: dict[str, CpuReader] = {}
    if args.database_url:
        dsn, registry = args.database_url, "external"
    else:
        progress("starting embedded PostgreSQL ...")
        server = stack.enter_context(embedded_registry())
        dsn, registry = server.dsn, "embedded"
        postmaster = server.postmaster_pid()
        if postmaster is not None:
            parties["pg"] = lambda: cpu_seconds(process_tree(postmaster))
            if args.pin:  # backends forked later inherit the postmaster's affinity
                for pid in process_tree(postmaster):
                    os.sched_setaffinity(pid, {LOADER_CPU})

    node_dir = Path(tempfile.mkdtemp(prefix="idnode-bench-admin-"))  # its keys live here
    stack.callback(shutil.rmtree, node_dir, ignore_errors=True)
    progress("starting idnode serve --demo ...")
    node = start_idnode(
        dsn, node_dir, name="native_admin_node", cpu=server_cpu, extra_args=["--demo"]
    )
    stack.callback(node.stop)
    progress(
        f"node pid {node.pid}: native tcp {node.handle_port}, http {node.http_port}, "
        f"metrics {node.admin_port}"
    )
    if args.pin:
        os.sched_setaffinity(0, {LOADER_CPU})  # this process: the clients
    parties = {"node": lambda: cpu_seconds([node.pid]), **parties, "client": client_cpu_seconds}

    plan = Plan(
        Target("127.0.0.1", node.handle_port, node.http_port, args.secret),
        run_tag(),
        args.clients,
        args.warmup,
        args.seconds,
        Records(args.fields),
        parties,
    )
    with asyncio.Runner(loop_factory=new_loop) as runner:
        outcome = runner.run(measure_all(plan, dsn, node.admin_port, new_login_key(args.login_key)))
    node.stop()

    report = Report(run_at, busy_before, registry, args, outcome, pbkdf2_answer_ms())
    print()
    for line in report.lines():
        print(line)
    report.append_csv()
    return 1 if outcome.problems else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_bench("native_admin", lambda stack: run(args, stack))


if __name__ == "__main__":
    sys.exit(main())
