"""The polite client of the abuse benchmark and tests: one request at a time, a few
hundred a second at most, from 127.0.0.1, resolving records the way real clients do,
and recording for each whether it was answered in time (``DEADLINE_S``: 100 ms).

A probe is one of ``KINDS``, taken in turn:

- ``udp_cached`` / ``tcp_cached`` / ``http_cached``: a record the node has cached;
- ``udp_uncached`` / ``tcp_uncached`` / ``http_uncached``: an existing record never
  asked for before (``fresh``), so a registry read;
- ``udp_fragmented``: a cached record asked for with a request of two datagrams (long
  type filters), the second sent ``fragment_gap_s`` after the first, as jitter on a
  real path would space them;
- ``http_session``: a check that the pending session made ``session_age_s`` earlier
  still exists (a client takes that long to answer its nonce), then ``DELETE`` of it;
  ``POST /api/sessions`` while fewer than ``SESSIONS_PENDING`` are pending;
- ``http_login`` (not in ``KINDS``; its own deadline): ``GET /api/sessions/this`` with
  the right Basic secret of the next admin of ``logins``, which must authenticate. (A
  node remembers a success, so each login should be another admin's.)

Native probes succeed on RC 1 with the record's values (UDP replies reassembled from
their datagrams), HTTP ones on 200/201. Everything runs on blocking sockets in the
calling thread: the measuring client shares no event loop with anything.
"""

from __future__ import annotations

import contextlib
import json
import math
import secrets
import socket
import struct
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.client import HTTPConnection, HTTPException
from urllib.parse import quote

from loadtest.attacks import basic, resolution, with_request_id
from protocol.bodies import ResolutionReply
from protocol.codes import ResponseCode
from protocol.errors import ProtocolError
from protocol.fragment import Reassembler, fragment_encoded
from protocol.message import ENVELOPE_BYTES, LENGTH_OFFSET, REQUEST_ID_OFFSET, Message, decode

POLITE = "127.0.0.1"
DEADLINE_S = 0.1
LOGIN_DEADLINE_S = 2.0  # a Basic login may hash its secret (PBKDF2, ~0.3 s of a core)
KINDS = (
    "udp_cached",
    "udp_uncached",
    "udp_fragmented",
    "tcp_cached",
    "tcp_uncached",
    "http_cached",
    "http_uncached",
    "http_session",
)
LOGIN = "http_login"
SESSIONS_PENDING = 4  # sessions the polite client holds unauthenticated at once, at most
# Two type filters that match nothing make a cached request two datagrams long.
_PADDING_TYPES = ("URL", "X-PADDING-" + "A" * 240, "X-PADDING-" + "B" * 240)
_U32 = struct.Struct(">I")


class ProbeFailed(Exception):
    """A probe got no good answer; the message says what it got instead."""


@dataclass(frozen=True)
class Probe:
    kind: str
    ok: bool  # a good answer within the deadline
    seconds: float  # until the answer, or the timeout
    problem: str = ""  # "" when answered well, even if late


@dataclass
class Politeness:
    """The probes of one measurement."""

    probes: list[Probe] = field(default_factory=list)
    seconds: float = 0.0

    def of(self, kind: str | None = None) -> list[Probe]:
        return [p for p in self.probes if kind is None or p.kind == kind]

    def share_ok(self, kind: str | None = None) -> float:
        probes = self.of(kind)
        return sum(p.ok for p in probes) / len(probes) if probes else math.nan

    def percentile_ms(self, q: float, kind: str | None = None) -> float:
        """The q-quantile (nearest rank) of the probes' times; failures count at the
        time they gave up."""
        times = sorted(p.seconds for p in self.of(kind))
        if not times:
            return math.nan
        return 1000 * times[max(0, min(len(times) - 1, math.ceil(q * len(times)) - 1))]

    def p99_ms(self, kind: str | None = None) -> float:
        return self.percentile_ms(0.99, kind)

    def failures(self) -> Counter[str]:
        """Failed probes by kind and what went wrong (``late`` when answered too slowly)."""
        return Counter(f"{p.kind}: {p.problem or 'late'}" for p in self.probes if not p.ok)

    def summary(self) -> str:
        n = len(self.probes)
        out = f"{n} probes, {100 * self.share_ok():.1f}% ok, p99 {self.p99_ms():.1f} ms"
        worst = self.failures().most_common(4)
        if worst:
            out += "; failed: " + ", ".join(f"{what} x{k}" for what, k in worst)
        return out


class PoliteClient:
    def __init__(
        self,
        host: str,
        handle_port: int,
        http_port: int,
        *,
        cached: Sequence[str],
        fresh: Iterator[str],
        source: str = POLITE,
        kinds: Sequence[str] = KINDS,
        interval_s: float = 0.01,
        deadline_s: float = DEADLINE_S,
        timeout_s: float = 0.5,
        fragment_gap_s: float = 0.05,
        session_age_s: float = 1.0,
        logins: Iterator[tuple[str, str]] | None = None,  # ("300:88.118.2/ADMIN", secret)
    ) -> None:
        self.host, self.handle_port, self.http_port = host, handle_port, http_port
        self.cached = list(cached)
        self.fresh = fresh
        self.source = source
        self.kinds = list(kinds)
        self.interval_s = interval_s
        self.deadline_s = deadline_s
        self.timeout_s = timeout_s
        self.fragment_gap_s = fragment_gap_s
        self.session_age_s = session_age_s
        self.logins = logins
        self._turn = 0
        self._sessions: deque[tuple[float, str]] = deque()
        self._probes: dict[str, Callable[[], None]] = {
            "udp_cached": lambda: self._udp(resolution(self._next_cached())),
            "udp_uncached": lambda: self._udp(resolution(next(self.fresh))),
            "udp_fragmented": lambda: self._udp(
                resolution(self._next_cached(), types=_PADDING_TYPES)
            ),
            "tcp_cached": lambda: self._tcp(resolution(self._next_cached())),
            "tcp_uncached": lambda: self._tcp(resolution(next(self.fresh))),
            "http_cached": lambda: self._get_handle(self._next_cached()),
            "http_uncached": lambda: self._get_handle(next(self.fresh)),
            "http_session": self._session,
            LOGIN: self._login,
        }
        unknown = set(self.kinds) - set(self._probes)
        if unknown:
            raise ValueError(
                f"unknown probe kinds {sorted(unknown)}; known: {sorted(self._probes)}"
            )
        if LOGIN in self.kinds and logins is None:
            raise ValueError(f"{LOGIN} probes need logins (admin, secret)")

    # -- measuring --------------------------------------------------------------------

    def probe(self, kind: str) -> Probe:
        deadline = LOGIN_DEADLINE_S if kind == LOGIN else self.deadline_s
        if kind == "udp_fragmented":
            deadline += self.fragment_gap_s  # the wait between its datagrams is ours
        started = time.perf_counter()
        try:
            self._probes[kind]()
        except ProbeFailed as exc:
            return Probe(kind, False, time.perf_counter() - started, str(exc))
        except TimeoutError:
            return Probe(kind, False, time.perf_counter() - started, "timeout")
        except (OSError, HTTPException) as exc:
            return Probe(kind, False, time.perf_counter() - started, type(exc).__name__)
        took = time.perf_counter() - started
        return Probe(kind, took <= deadline, took)

    def measure(self, seconds: float) -> Politeness:
        """Probes in turn, one every ``interval_s`` (or at once after a slow one)."""
        out = Politeness()
        started = time.monotonic()
        slot = started
        while (now := time.monotonic()) - started < seconds:
            if now < slot:
                time.sleep(slot - now)
            kind = self.kinds[self._turn % len(self.kinds)]
            self._turn += 1
            out.probes.append(self.probe(kind))
            slot = max(slot + self.interval_s, time.monotonic())
        out.seconds = time.monotonic() - started
        self.end_sessions()
        return out

    def end_sessions(self) -> None:
        """End the sessions still pending, as a client that gives up on them would (the
        node counts a source's pending sessions against a per-source limit)."""
        while self._sessions:
            _, sid = self._sessions.popleft()
            with contextlib.suppress(OSError, HTTPException):  # else it expires
                self._http("DELETE", "/api/sessions/this", _session_auth(sid), 2.0)

    def warm(self, timeout_s: float = 30.0) -> None:
        """Until every cached record answers on every transport (and so is cached)."""
        deadline = time.monotonic() + timeout_s
        asks: list[Callable[[str], None]] = [
            lambda h: self._udp(resolution(h)),
            lambda h: self._tcp(resolution(h)),
            self._get_handle,
        ]
        for handle in self.cached:
            for ask in asks:
                while True:
                    try:
                        ask(handle)
                        break
                    except (ProbeFailed, OSError, HTTPException) as exc:
                        if time.monotonic() > deadline:
                            raise ProbeFailed(f"{handle} does not resolve: {exc}") from None
                        time.sleep(0.1)

    def _next_cached(self) -> str:
        return self.cached[self._turn % len(self.cached)]

    # -- native -------------------------------------------------------------------------

    def _udp(self, request: bytes) -> None:
        request_id = secrets.randbits(31) or 1
        request = with_request_id(request, request_id)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((self.source, 0))
            sock.connect((self.host, self.handle_port))
            sock.settimeout(self.timeout_s)
            datagrams = fragment_encoded(request)
            for n, datagram in enumerate(datagrams):
                if n:
                    time.sleep(self.fragment_gap_s)
                sock.send(datagram)
            reassembler = Reassembler()
            end = time.monotonic() + self.timeout_s
            while True:
                sock.settimeout(max(0.001, end - time.monotonic()))
                data = sock.recv(65536)
                if len(data) < ENVELOPE_BYTES:
                    continue
                if _U32.unpack_from(data, REQUEST_ID_OFFSET)[0] != request_id:
                    continue
                try:
                    whole = reassembler.feed(data, time.monotonic())
                except ProtocolError as exc:
                    raise ProbeFailed(f"bad reply fragment: {exc}") from None
                if whole is not None:
                    _resolved(whole)
                    return

    def _tcp(self, request: bytes) -> None:
        with socket.create_connection(
            (self.host, self.handle_port), timeout=self.timeout_s, source_address=(self.source, 0)
        ) as sock:
            sock.sendall(request)
            head = _read_exactly(sock, ENVELOPE_BYTES)
            (length,) = _U32.unpack_from(head, LENGTH_OFFSET)
            _resolved(head + _read_exactly(sock, length))

    # -- HTTP -------------------------------------------------------------------------

    def _http(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> tuple[int, bytes]:
        conn = HTTPConnection(
            self.host,
            self.http_port,
            timeout=timeout_s or self.timeout_s,
            source_address=(self.source, 0),
        )
        try:
            conn.request(method, path, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def _get_handle(self, handle: str) -> None:
        status, _ = self._http("GET", "/api/handles/" + quote(handle, safe="/"))
        if status != 200:
            raise ProbeFailed(f"HTTP {status}")

    def _session(self) -> None:
        """Check (and end) the oldest pending session once session_age_s old; make a new
        one while fewer than SESSIONS_PENDING are: a client holds a few at most."""
        now = time.monotonic()
        if self._sessions and now - self._sessions[0][0] >= self.session_age_s:
            _, sid = self._sessions.popleft()
            auth = _session_auth(sid)
            status, body = self._http("GET", "/api/sessions/this", auth)
            if status != 200 or json.loads(body).get("sessionId") != sid:
                raise ProbeFailed(f"a pending session was lost (HTTP {status})")
            status, _ = self._http("DELETE", "/api/sessions/this", auth)
            if status != 204:
                raise ProbeFailed(f"ending a session: HTTP {status}")
        if len(self._sessions) < SESSIONS_PENDING:
            status, body = self._http("POST", "/api/sessions")
            if status != 201:
                raise ProbeFailed(f"HTTP {status}")
            self._sessions.append((now, json.loads(body)["sessionId"]))

    def _login(self) -> None:
        assert self.logins is not None
        admin, secret = next(self.logins)
        auth = {"Authorization": basic(admin, secret)}
        status, body = self._http("GET", "/api/sessions/this", auth, 2 * LOGIN_DEADLINE_S)
        if status != 200 or not json.loads(body).get("authenticated"):
            raise ProbeFailed(f"HTTP {status}")


def _session_auth(session_id: str) -> dict[str, str]:
    return {"Authorization": f'Handle sessionId="{session_id}"'}


def _read_exactly(sock: socket.socket, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise ProbeFailed("connection closed by the node")
        out += chunk
    return bytes(out)


def _resolved(data: bytes) -> None:
    """A reply that is RC 1 with values; ProbeFailed otherwise."""
    try:
        reply: Message = decode(data)
    except ProtocolError as exc:
        raise ProbeFailed(f"undecodable reply: {exc}") from None
    rc = reply.header.response_code
    if rc != ResponseCode.SUCCESS:
        raise ProbeFailed(f"RC {rc}")
    if not isinstance(reply.body, ResolutionReply) or not reply.body.values:
        raise ProbeFailed("RC 1 without values")
