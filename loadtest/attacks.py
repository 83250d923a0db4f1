"""Attacks on a node, for the abuse benchmark (loadtest/abuse.py) and tests
(tests/e2e/test_abuse.py): each floods or hogs one node from a source address of its
own, in processes of its own, so the attacking load never shares an interpreter (the
GIL, an event loop) with the client that measures how the node holds up.

Linux loopback answers for the whole of 127.0.0.0/8, so the default source ``ATTACKER``
(127.0.1.2) is another /24 and another /32 than a polite client on 127.0.0.1: per-source
limits keyed on /24 (UDP) or /32 (connections) tell them apart, as they would two hosts
on the internet. The node must run with ``rate_limit_exempt_networks`` empty, or loopback
is exempt from every per-source limit (node/settings.py).

    attack = MissFlood(Target("127.0.0.1", handle_port, http_port), prefix="88.118.2")
    with attack:                      # start(): the processes; stop() on leaving
        attack.wait_engaged()         # at full strength (ramped up, connections held)
        ...measure...
    print(attack.counts.summary())

Attacks run in processes started by multiprocessing's fork server, which imports the
main module as "spawn" does: a script using them keeps its own top level under
``if __name__ == "__main__":``.

Kinds (docs/protocol.md for the wire format):

- ``MissFlood``: UDP resolutions of handles that do not exist under a served prefix,
  each new, so every one misses the cache and reads the registry;
- ``CertFlood``: UDP resolutions with the CERT flag (a signed reply), of existing
  records and of ones that do not exist;
- ``FragmentFlood``: first fragments of multi-datagram requests whose rest never comes,
  each a new request id: entries in the node's reassembly table;
- ``SessionFlood``: anonymous ``POST /api/sessions`` over keep-alive connections;
- ``ConnectionHog``: as many TCP connections as it can open, held, to the native port
  (a partial envelope; some send requests and never read a reply) and to the HTTP port
  (half a request line, never finished);
- ``PasswordGuess``: HTTP Basic with wrong secrets for a real admin identity.
"""

from __future__ import annotations

import base64
import ipaddress
import multiprocessing
import os
import random
import resource
import secrets
import select
import socket
import struct
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from http.client import HTTPConnection, HTTPException
from types import TracebackType
from typing import Any, ClassVar, Self
from urllib.parse import quote

from protocol.bodies import ResolutionRequest
from protocol.codes import OpCode, OpFlag
from protocol.fragment import fragment_encoded
from protocol.message import REQUEST_ID_OFFSET, Envelope, Header, Message, encode

ATTACKER = "127.0.1.2"  # another /24 and /32 than 127.0.0.1
# What the reference client sends (docs/protocol.md): RECU | CACR | PUBL.
DEFAULT_FLAGS = OpFlag.RECU | OpFlag.CACR | OpFlag.PUBL
ENGAGE_AFTER_S = 0.5  # a flood counts as at full strength after sending this long
ATTACK_NICE = 10  # attack processes yield the CPU to the node and the measuring client
RAMP_STALL_S = 1.0  # a hog's ramp ends once no connection opened for this long
RAMP_ENGAGED_S = 10.0  # and it counts as at full strength after this, ramp over or not
_BURST = 256  # datagrams sent per pacing step at most, so replies are drained in between
_U32 = struct.Struct(">I")
_IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)  # Linux
_LINGER_RESET = struct.pack("ii", 1, 0)  # close with RST: no TIME_WAIT left behind
_CLOSED = select.POLLRDHUP | select.POLLHUP | select.POLLERR


class AttackError(Exception):
    """An attack could not run as asked; the message says why."""


@dataclass(frozen=True)
class Target:
    """The node under attack (its native port serves UDP and TCP)."""

    host: str
    handle_port: int
    http_port: int


def resolution(
    handle: str,
    flags: OpFlag = DEFAULT_FLAGS,
    types: tuple[str, ...] = (),
    request_id: int | None = None,
) -> bytes:
    """A native RESOLUTION request, encoded (envelope included)."""
    env = Envelope(request_id=request_id or secrets.randbits(31) or 1)
    header = Header(OpCode.RESOLUTION, flags=flags, expiration=int(time.time()) + 43_200)
    return encode(Message(env, header, ResolutionRequest(handle, (), types)))


def with_request_id(data: bytes, request_id: int) -> bytes:
    return data[:REQUEST_ID_OFFSET] + _U32.pack(request_id) + data[REQUEST_ID_OFFSET + 4 :]


def source_addresses(first: str, spread: int) -> list[str]:
    """``spread`` consecutive addresses from ``first`` (a botnet on one /24, say)."""
    start = ipaddress.ip_address(first)
    return [str(start + i) for i in range(spread)]


def basic(user: str, secret: str) -> str:
    """An Authorization value as Handle.Net clients send it (user percent-encoded)."""
    token = quote(user, safe="").encode() + b":" + secret.encode()
    return "Basic " + base64.b64encode(token).decode("ascii")


# -- what the attack processes count ----------------------------------------------------

_FIELDS = ("sent", "replies", "refused", "errors", "bytes_out", "bytes_in", "held", "held_max")
SENT, REPLIES, REFUSED, ERRORS, BYTES_OUT, BYTES_IN, HELD, HELD_MAX = range(len(_FIELDS))


@dataclass(frozen=True)
class Counts:
    """What an attack did, summed over its processes. ``replies``: datagrams or HTTP
    responses received (for a hog, connections the node closed); ``refused``: replies
    that said no (HTTP 429/503); ``held``: connections held when counted (0 once
    stopped), ``held_max`` the most held at once."""

    seconds: float
    sent: int = 0
    replies: int = 0
    refused: int = 0
    errors: int = 0
    bytes_out: int = 0
    bytes_in: int = 0
    held: int = 0
    held_max: int = 0

    def summary(self) -> str:
        rate = self.sent / max(self.seconds, 1e-9)
        out = f"sent {self.sent} ({rate:.0f}/s), {self.replies} replies"
        if self.refused:
            out += f", {self.refused} refused"
        if self.errors:
            out += f", {self.errors} errors"
        if self.bytes_out or self.bytes_in:
            out += f", {self.bytes_out / 1e6:.1f} MB out / {self.bytes_in / 1e6:.1f} MB in"
        if self.held_max:
            out += f", held {self.held_max} connections at most"
        return out


class Tally:
    """Counters in shared memory (each process writes its own), and the two events the
    parent and the attack processes signal each other with."""

    def __init__(self, ctx: Any) -> None:
        self.values = ctx.RawArray("q", len(_FIELDS))
        self.stop = ctx.Event()  # set by the parent
        self.engaged = ctx.Event()  # set by the attack process once at full strength

    def stopping(self) -> bool:
        return bool(self.stop.is_set())

    def engage(self) -> None:
        if not self.engaged.is_set():
            self.engaged.set()

    def hold(self, n: int) -> None:
        self.values[HELD] = n
        self.values[HELD_MAX] = max(self.values[HELD_MAX], n)


def _paced(rate_per_s: float | None, tally: Tally) -> Iterator[int]:
    """How many to send now, at ``rate_per_s`` (None: as fast as the caller goes), until
    stopped; engaged after ENGAGE_AFTER_S."""
    start = time.monotonic()
    done = 0
    while not tally.stopping():
        elapsed = time.monotonic() - start
        if elapsed >= ENGAGE_AFTER_S:
            tally.engage()
        due = _BURST if rate_per_s is None else min(int(elapsed * rate_per_s) - done, _BURST)
        if due <= 0:
            time.sleep(0.0005)
            yield 0
            continue
        done += due
        yield due


def _run_part(attack: Attack, part: int, tally: Tally) -> None:
    """An attack process: niced, so that on a machine short of cores the node and the
    measuring client keep theirs (a real attacker spends its own CPU, not the node's);
    the descriptor limit raised (a hog needs thousands); then work."""
    os.nice(ATTACK_NICE)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        attack.work(part, tally)
    finally:
        tally.engage()  # never leave the parent waiting on a process that ended


class Attack:
    """Base: ``parts`` processes each run ``work(part, tally)`` until told to stop."""

    name: ClassVar[str] = ""
    parts: ClassVar[int] = 1

    def __init__(self, target: Target, source: str = ATTACKER) -> None:
        self.target = target
        self.source = source
        self._procs: list[Any] = []
        self._tallies: list[Tally] = []
        self._started = 0.0
        self.counts: Counts | None = None

    def __getstate__(self) -> dict[str, Any]:
        # Pickled into the attack processes: their handles stay here.
        return {k: v for k, v in self.__dict__.items() if k not in ("_procs", "_tallies")}

    def work(self, part: int, tally: Tally) -> None:
        raise NotImplementedError

    def scale(self, factor: float) -> Self:
        """Weaker (factor < 1) or stronger: its rate, connections or both, times factor."""
        for knob in ("rate_per_s", "connections", "max_connections"):
            value = getattr(self, knob, None)
            if value is not None:
                setattr(self, knob, type(value)(max(1, value * factor)))
        return self

    def start(self) -> Attack:
        # Forked from a single-threaded server process (never from a threaded test
        # process), which has this module imported already: a start costs milliseconds.
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["__main__", __name__])
        self._tallies = [Tally(ctx) for _ in range(self.parts)]
        self._procs = [
            ctx.Process(
                target=_run_part, args=(self, i, t), name=f"attack-{self.name}-{i}", daemon=True
            )
            for i, t in enumerate(self._tallies)
        ]
        self._started = time.monotonic()
        for p in self._procs:
            p.start()
        return self

    def wait_engaged(self, timeout_s: float = 30.0) -> None:
        """Until every process is at full strength; AttackError if one died or is late."""
        deadline = time.monotonic() + timeout_s
        for proc, tally in zip(self._procs, self._tallies, strict=True):
            while not tally.engaged.wait(0.1):
                if not proc.is_alive():
                    break
                if time.monotonic() > deadline:
                    raise AttackError(f"{self.name}: not at full strength after {timeout_s:g} s")
            if not proc.is_alive():
                raise AttackError(f"{self.name}: attack process exited ({proc.exitcode})")

    def snapshot(self) -> Counts:
        total = [sum(t.values[i] for t in self._tallies) for i in range(len(_FIELDS))]
        return Counts(time.monotonic() - self._started, *total)

    def stop(self) -> Counts:
        for t in self._tallies:
            t.stop.set()
        for p in self._procs:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join(5)
        self.counts = self.snapshot()
        return self.counts

    def __enter__(self) -> Attack:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


# -- UDP floods ---------------------------------------------------------------------------


def udp_socket(source: str, host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((source, 0))
    sock.connect((host, port))
    sock.setblocking(False)
    return sock


class UdpFlood(Attack):
    """Datagrams at ``rate_per_s`` from one socket; replies are read and counted."""

    def __init__(self, target: Target, source: str = ATTACKER, rate_per_s: float = 3000) -> None:
        super().__init__(target, source)
        self.rate_per_s = rate_per_s

    def datagrams(self) -> Iterator[bytes]:
        raise NotImplementedError

    def work(self, part: int, tally: Tally) -> None:
        v = tally.values
        stream = self.datagrams()
        with udp_socket(self.source, self.target.host, self.target.handle_port) as sock:
            for due in _paced(self.rate_per_s, tally):
                for _ in range(due):
                    data = next(stream)
                    try:
                        sock.send(data)
                    except OSError:  # send buffer full, or an ICMP error of an earlier one
                        v[ERRORS] += 1
                        continue
                    v[SENT] += 1
                    v[BYTES_OUT] += len(data)
                while True:
                    try:
                        reply = sock.recv(65536)
                    except OSError:
                        break
                    v[REPLIES] += 1
                    v[BYTES_IN] += len(reply)


class MissFlood(UdpFlood):
    name = "udp cache-miss flood"

    def __init__(
        self,
        target: Target,
        source: str = ATTACKER,
        rate_per_s: float = 3000,
        prefix: str = "88.118.2",
    ) -> None:
        super().__init__(target, source, rate_per_s)
        self.prefix = prefix

    def datagrams(self) -> Iterator[bytes]:
        run = secrets.token_hex(4)
        for n in range(1 << 62):
            yield resolution(f"{self.prefix}/MISS-{run}-{n}")
        raise AssertionError("unreachable")


class CertFlood(UdpFlood):
    """Every other request names an existing record (``handles``), the rest new handles
    that do not exist: a signed reply either way, and a signed error is signing too."""

    name = "udp CERT flood"

    def __init__(
        self,
        target: Target,
        handles: Sequence[str],
        source: str = ATTACKER,
        rate_per_s: float = 3000,
        prefix: str = "88.118.2",
    ) -> None:
        super().__init__(target, source, rate_per_s)
        self.handles = tuple(handles)
        self.prefix = prefix

    def datagrams(self) -> Iterator[bytes]:
        run = secrets.token_hex(4)
        for n in range(1 << 62):
            handle = (
                self.handles[(n // 2) % len(self.handles)]
                if n % 2 == 0
                else f"{self.prefix}/NO-SUCH-{run}-{n}"
            )
            yield resolution(handle, DEFAULT_FLAGS | OpFlag.CERT)
        raise AssertionError("unreachable")


class FragmentFlood(UdpFlood):
    """First fragments of a 3-datagram resolution request (protocol/fragment.py), each
    under a new request id, whose other fragments never come."""

    name = "udp bogus-fragment flood"

    def __init__(self, target: Target, source: str = ATTACKER, rate_per_s: float = 10_000) -> None:
        super().__init__(target, source, rate_per_s)

    def datagrams(self) -> Iterator[bytes]:
        long_handle = "88.118.2/FRAGMENT-" + "X" * 1000
        first = bytes(fragment_encoded(resolution(long_handle))[0])
        for n in range(1, 1 << 62):
            yield with_request_id(first, n & 0x7FFFFFFF or 1)
        raise AssertionError("unreachable")


# -- HTTP floods ----------------------------------------------------------------------------


class HttpFlood(Attack):
    """``connections`` keep-alive connections, each a thread of one process sending
    ``request()`` and reading the response, ``rate_per_s`` in all (None: closed loop)."""

    def __init__(
        self,
        target: Target,
        source: str = ATTACKER,
        connections: int = 8,
        rate_per_s: float | None = None,
        spread: int = 1,
    ) -> None:
        super().__init__(target, source)
        self.connections = connections
        self.rate_per_s = rate_per_s
        self.spread = spread  # connections come from this many consecutive addresses

    def request(self, n: int) -> tuple[str, str, dict[str, str]]:
        """(method, path, headers) of the n-th request."""
        raise NotImplementedError

    def work(self, part: int, tally: Tally) -> None:
        sources = source_addresses(self.source, self.spread)
        lock = threading.Lock()  # += on shared counters from several threads
        per = None if self.rate_per_s is None else self.rate_per_s / self.connections
        threads = [
            threading.Thread(
                target=self._connection, args=(sources[i % len(sources)], per, tally, lock)
            )
            for i in range(self.connections)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def _connection(
        self, source: str, rate_per_s: float | None, tally: Tally, lock: threading.Lock
    ) -> None:
        v = tally.values
        conn: HTTPConnection | None = None
        n = 0
        for due in _paced(rate_per_s, tally):
            # One at a time, each waiting for its response: behind the pace, it stays behind.
            for _ in range(min(due, 1)):
                if conn is None:
                    conn = HTTPConnection(
                        self.target.host,
                        self.target.http_port,
                        timeout=5,
                        source_address=(source, 0),
                    )
                method, path, headers = self.request(n)
                n += 1
                try:
                    conn.request(method, path, headers=headers)
                    response = conn.getresponse()
                    body = response.read()
                except (OSError, HTTPException):
                    conn.close()
                    conn = None
                    with lock:
                        v[ERRORS] += 1
                    time.sleep(0.01)  # the node refuses connections: do not spin
                    continue
                with lock:
                    v[SENT] += 1
                    v[REPLIES] += 1
                    v[BYTES_IN] += len(body)
                    if response.status in (429, 503):
                        v[REFUSED] += 1
        if conn is not None:
            conn.close()


class SessionFlood(HttpFlood):
    name = "http session flood"

    def __init__(
        self,
        target: Target,
        source: str = ATTACKER,
        connections: int = 8,
        rate_per_s: float | None = 2000,
        spread: int = 1,
    ) -> None:
        super().__init__(target, source, connections, rate_per_s, spread)

    def request(self, n: int) -> tuple[str, str, dict[str, str]]:
        return "POST", "/api/sessions", {}  # http.client sends Content-Length: 0


class PasswordGuess(HttpFlood):
    """``GET /api/sessions/this`` (a "who am I") with Basic credentials of ``admin``
    (``300:88.118.2/ADMIN``) and a wrong secret each time."""

    name = "http password guessing"

    def __init__(
        self,
        target: Target,
        admin: str,
        source: str = ATTACKER,
        connections: int = 32,
        rate_per_s: float | None = 200,
        spread: int = 1,
    ) -> None:
        super().__init__(target, source, connections, rate_per_s, spread)
        self.admin = admin

    def request(self, n: int) -> tuple[str, str, dict[str, str]]:
        guess = f"guess-{n}-{random.randrange(1 << 30)}"
        return "GET", "/api/sessions/this", {"Authorization": basic(self.admin, guess)}


# -- connection hog -----------------------------------------------------------------------


class ConnectionHog(Attack):
    """Opens connections until it holds ``max_connections`` per front or the node stops
    accepting, and holds them; reopens those the node closes, at most ``reopen_per_s``.
    Part 0 hogs the native TCP port, part 1 the HTTP port.

    Native: a partial envelope (10 of its 20 bytes) on each, except the first
    ``non_readers``, which send ``pipelined`` requests for ``record`` (make it a large
    one) and never read a reply, so the node's writes to them block. HTTP: half a
    request line on each, never finished."""

    name = "tcp/http connection hog"
    parts = 2

    def __init__(
        self,
        target: Target,
        record: str,
        source: str = ATTACKER,
        max_connections: int = 19_000,
        reopen_per_s: float = 200,
        non_readers: int = 16,
        pipelined: int = 32,
    ) -> None:
        super().__init__(target, source)
        self.record = record
        self.max_connections = max_connections
        self.reopen_per_s = reopen_per_s
        self.non_readers = non_readers
        self.pipelined = pipelined

    def _opening(self, part: int, n: int) -> bytes:
        if part == 1:  # half a request line
            line = f"GET /api/handles/{quote(self.record, safe='/')} HTTP/1.1\r\n".encode()
            return line[: len(line) // 2]
        if n < self.non_readers:
            return b"".join(resolution(self.record) for _ in range(self.pipelined))
        return resolution(self.record)[:10]

    def _connect(self, port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_IP, _IP_BIND_ADDRESS_NO_PORT, 1)  # port at connect
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            sock.bind((self.source, 0))
            sock.settimeout(0.25)
            sock.connect((self.target.host, port))
        except OSError:
            sock.close()
            raise
        return sock

    def work(self, part: int, tally: Tally) -> None:
        v = tally.values
        port = self.target.handle_port if part == 0 else self.target.http_port
        held: dict[int, socket.socket] = {}
        poller = select.poll()
        opened = 0
        # The ramp opens as fast as the node accepts, until max_connections or until none
        # has opened for RAMP_STALL_S (the node stopped accepting); then reopen_per_s.
        ramped = False
        budget, tick, last_check = 0.0, time.monotonic(), 0.0
        started = last_open = tick
        try:
            while not tally.stopping():
                now = time.monotonic()
                if ramped:
                    budget = min(budget + (now - tick) * self.reopen_per_s, 100.0)
                tick = now
                may_open = len(held) < self.max_connections and (not ramped or budget >= 1)
                if not may_open:
                    time.sleep(0.002)
                else:
                    budget = max(0.0, budget - 1)
                    data = self._opening(part, opened)
                    try:
                        sock = self._connect(port)
                        sock.sendall(data)
                        sock.setblocking(False)
                    except OSError:  # refused, timed out, or out of descriptors
                        v[ERRORS] += 1
                        ramped = ramped or now - last_open >= RAMP_STALL_S  # as many as it can
                        time.sleep(0.005)
                    else:
                        held[sock.fileno()] = sock
                        poller.register(sock, _CLOSED)
                        opened += 1
                        last_open = now
                        ramped = ramped or opened >= self.max_connections
                        v[SENT] += 1
                        v[BYTES_OUT] += len(data)
                if ramped or now - started >= RAMP_ENGAGED_S:
                    tally.engage()
                if now - last_check >= 0.2:
                    last_check = now
                    for fd, _ in poller.poll(0):  # the node closed it: reopen later
                        poller.unregister(fd)
                        held.pop(fd).close()
                        v[REPLIES] += 1
                    tally.hold(len(held))
        finally:
            for sock in held.values():
                sock.close()
            tally.hold(0)
