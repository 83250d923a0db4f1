"""Serving an aiohttp application from an ``Acceptor`` (node.runtime.listen), with what
aiohttp leaves to the server on the public internet:

- a deadline for each request's line and headers (``header_timeout_s``), from the
  connection's start or the first byte of a later request. aiohttp on its own waits for
  them as long as its keep-alive timeout (3,630 s by default), so a client sending half
  a request line (slowloris) held its connection for an hour;
- the keep-alive timeout, an idle connection's lifetime (aiohttp's own timer);
- a limit on pauses in a request body the application waits for
  (``body_idle_timeout_s``): aiohttp waits for body bytes as long as the client likes,
  so a client sending one byte a minute (a slow POST) held a handler and its connection;
- one counted, rate-limited log line for malformed requests, where aiohttp logs a
  traceback for each: a log flood anyone can cause;
- ``Server: idnode`` instead of the Python and aiohttp versions;
- a fast lane: an app may offer ready replies (``QUICK_ANSWERS``, node.runtime.fastlane)
  that the connection writes itself for the plain requests they answer, while aiohttp
  has nothing of the connection's in hand, or reads them (``fill``) while the
  connection holds the bytes that follow (up to MAX_HELD_BYTES, then it stops reading);
  everything else goes to aiohttp as ever.

The deadline is watched by a request handler (aiohttp's ``RequestHandler``, one per
connection) that knows when a request reaches the application through
``request_deadline``, the outermost middleware of every app served this way.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import hdrs, web
from aiohttp.http import HttpProcessingError
from aiohttp.typedefs import Handler

from node.runtime.conns import ConnectionGate, Refusal, Ticket
from node.runtime.fastlane import Framing, QuickAnswers, quick_request
from node.runtime.listen import Acceptor
from node.runtime.lograte import LogEvery
from node.runtime.metrics import NodeMetrics

SERVER = "idnode"
log = logging.getLogger("idnode.http")
# The ready replies an app offers its connections (set before the app is frozen).
QUICK_ANSWERS = web.AppKey("idnode.quick_answers", QuickAnswers)
WRITE_BATCH_BYTES = 64 * 1024  # pipelined fast-lane replies written at once, at most
# Bytes held while the lane reads for a request: past this, the connection stops reading.
MAX_HELD_BYTES = 64 * 1024


def _plain_reply(status: str, text: str) -> bytes:
    body = (text + "\n").encode()
    head = (
        f"HTTP/1.1 {status}\r\nServer: {SERVER}\r\nConnection: close\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def refusal_reply(refusal: Refusal) -> bytes:
    """What a connection refused at the door gets (plain HTTP only: over TLS nothing can
    be said before the handshake the refusal saves)."""
    return _plain_reply("503 Service Unavailable", refusal.message)


class HttpPolicy:
    """What every connection of one port shares: its deadline, metrics and log lines."""

    def __init__(
        self,
        front: str,
        metrics: NodeMetrics,
        *,
        header_timeout_s: float,
        body_idle_timeout_s: float = 30.0,
    ):
        self.front = front
        self.header_timeout_s = header_timeout_s
        self.body_idle_timeout_s = body_idle_timeout_s
        self.timeout_reply = _plain_reply(
            "408 Request Timeout",
            f"request line and headers not received within {header_timeout_s:g} s",
        )
        self._timed_out = metrics.connections_timed_out.labels(front, "header_timeout")
        self._body_timed_out = metrics.connections_timed_out.labels(front, "body_timeout")
        self._malformed = metrics.malformed.labels(front)
        self._timeout_log = LogEvery(log, logging.INFO)
        self._malformed_log = LogEvery(log, logging.INFO)
        self._lane_log = LogEvery(log, logging.ERROR)

    def timed_out(self, peer: str | None) -> None:
        self._timed_out.inc()
        self._timeout_log(
            "%s: closed a connection from %s: no complete request line and headers within "
            "%g s (http_header_timeout_s)",
            self.front,
            peer,
            self.header_timeout_s,
        )

    def body_timed_out(self, peer: str | None) -> None:
        self._body_timed_out.inc()
        self._timeout_log(
            "%s: closed a connection from %s: its request body paused for %g s "
            "(http_body_idle_timeout_s)",
            self.front,
            peer,
            self.body_idle_timeout_s,
        )

    def malformed(self, peer: str | None, exc: HttpProcessingError) -> None:
        self._malformed.inc()
        self._malformed_log(
            "%s: malformed request from %s (answered 400): %.120s",
            self.front,
            peer,
            exc.message,
        )

    def lane_failed(self, exc: BaseException | None = None) -> None:
        """A bug: the request goes to aiohttp, the connection gives the lane up. (``exc``:
        the error, when it is not the one being handled.)"""
        self._lane_log(
            "%s: the fast lane failed; requests left to aiohttp:\n%s",
            self.front,
            "".join(traceback.format_exception(exc)) if exc else traceback.format_exc(),
        )


class GuardedRequestHandler(web.RequestHandler):
    """aiohttp's per-connection protocol, plus the header deadline, quiet 400s, the Server
    header on the replies aiohttp makes itself, the connection's ticket returned when it
    closes, and the fast lane (``lane``: ready replies written here)."""

    def __init__(
        self,
        manager: web.Server,
        *,
        loop: asyncio.AbstractEventLoop,
        policy: HttpPolicy,
        ticket: Ticket | None,
        lane: QuickAnswers | None = None,
        **kwargs: Any,
    ):
        super().__init__(manager, loop=loop, **kwargs)
        self._clock_loop = loop
        self._policy = policy
        self._ticket = ticket
        self._deadline: asyncio.TimerHandle | None = None
        self._in_request = False
        self._partial = False  # bytes of a request not yet handed to the application
        # The fast lane: None when the app offers none or this connection gave it up.
        self._lane = lane
        self._framing = Framing()  # the bytes handed to aiohttp
        self._answered = 0  # requests aiohttp has answered (of framing.requests)
        self._peer: str | None = None
        # While the application waits for a request body: the body, when its last bytes
        # came (loop time), and the timer that checks for a pause (one per pause, not
        # one per chunk: data_received only notes the time).
        self._body: Any = None
        self._body_seen = 0.0
        self._body_timer: asyncio.TimerHandle | None = None
        # A request the lane reads the registry for (``lane.fill``): what arrives
        # meanwhile is held, this request's own bytes first, until its reply is written.
        self._filling: asyncio.Task[bytes | None] | None = None
        self._held: list[bytes] = []
        self._held_size = 0
        self._fill_length = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        peer = transport.get_extra_info("peername")
        # As aiohttp's request.remote: who a record from upstream may be sent to.
        self._peer = str(peer[0]) if isinstance(peer, (list, tuple)) else None
        self._arm()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        try:
            super().connection_lost(exc)
        finally:
            if self._ticket is not None:
                self._ticket.release()

    def data_received(self, data: bytes) -> None:
        if self._filling is not None:
            self._hold(data)
            return
        lane = self._lane
        if lane is not None and data and not self._force_close and not self._close:
            framing = self._framing
            # aiohttp has nothing in hand: no request unanswered, no partial bytes (a
            # reply written now cannot overtake one of its own), and no write backlog.
            if framing.between and framing.requests == self._answered and not self._paused:
                data = self._answer_quick(lane, data)
                if not data:
                    return
        self._give(data)

    def _give(self, data: bytes) -> None:
        """Hand ``data`` to aiohttp."""
        if self._lane is not None and data:
            self._framing.feed(data)  # from here on, aiohttp's until it has answered all
            if self._framing.lost:
                self._lane = None
        if not self._in_request and data:
            self._partial = True
            if self._deadline is None:
                self._arm()
        elif self._body is not None:
            self._body_seen = self._clock_loop.time()
        super().data_received(data)

    def _answer_quick(self, lane: QuickAnswers, data: bytes) -> bytes:
        """Answer the requests at the start of ``data`` that the lane can; the rest,
        from the first it cannot (or a partial request) on, is returned for aiohttp."""
        transport = self.transport
        assert transport is not None
        prefix, peer, pos, n = lane.prefix, self._peer, 0, len(data)
        replies: list[bytes] = []  # pipelined replies go out together
        filling = False
        size = 0
        while True:
            end = data.find(b"\r\n\r\n", pos)
            if end < 0:
                break
            request = quick_request(data, pos, end, prefix)
            if request is None:
                break
            try:
                reply = lane.answer(*request, peer)
            except Exception:
                self._lane = None
                self._policy.lane_failed()
                break
            if reply is None:
                filling = self._fill(lane, request, data, pos, end)
                break
            replies.append(reply)
            size += len(reply)
            pos = end + 4
            if pos == n:
                break
            if size >= WRITE_BATCH_BYTES:
                transport.write(b"".join(replies))
                replies.clear()
                size = 0
                if self._paused:
                    break  # the client reads slowly: aiohttp waits for it
        if replies:
            transport.write(replies[0] if len(replies) == 1 else b"".join(replies))
        elif not pos and not filling:
            return data
        self._replied()
        return b"" if filling else data[pos:]

    def _replied(self) -> None:
        """What aiohttp does after each request: the header deadline is off until the
        next request's first byte, the keep-alive timer runs from now (while a request
        is filled, not at all: it is no idle connection)."""
        self._partial = False
        self._disarm()
        if self._filling is not None:
            if self._keepalive_handle is not None:
                self._keepalive_handle.cancel()
                self._keepalive_handle = None
            return
        close_time = self._clock_loop.time() + self._keepalive_timeout
        self._next_keepalive_close_time = close_time
        if self._keepalive_handle is None:
            self._keepalive_handle = self._clock_loop.call_at(close_time, self._process_keepalive)

    def _fill(
        self,
        lane: QuickAnswers,
        request: tuple[bytes, bool, bytes | None, bytes],
        data: bytes,
        pos: int,
        end: int,
    ) -> bool:
        """Have the lane read what the request at ``data[pos:end]`` needs (a miss), holding
        it and everything after it until its reply is written (``_filled``)."""
        self._held, self._held_size = [data[pos:]], len(data) - pos
        self._fill_length = end + 4 - pos
        self._filling = self._clock_loop.create_task(lane.fill(*request, self._peer))
        self._filling.add_done_callback(self._filled)
        return True

    def _hold(self, data: bytes) -> None:
        self._held.append(data)
        self._held_size += len(data)
        if self._held_size > MAX_HELD_BYTES and self.transport is not None:
            self.transport.pause_reading()  # resumed once the reply is written

    def _filled(self, task: asyncio.Task[bytes | None]) -> None:
        self._filling = None
        held, self._held = b"".join(self._held), []
        paused, self._held_size = self._held_size > MAX_HELD_BYTES, 0
        transport = self.transport
        if transport is None or transport.is_closing():
            return  # the client went away meanwhile
        if paused:
            transport.resume_reading()
        reply = None
        if not task.cancelled():
            exc = task.exception()
            if exc is not None:
                self._lane = None
                self._policy.lane_failed(exc)
            else:
                reply = task.result()
        if reply is None:
            self._give(held)  # aiohttp answers the request, and whatever follows it
            return
        transport.write(reply)
        self._replied()
        rest = held[self._fill_length :]
        if rest:
            self.data_received(rest)

    async def _handle_request(
        self,
        request: web.BaseRequest,
        start_time: float | None,
        request_handler: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]],
    ) -> tuple[web.StreamResponse, bool]:
        resp, reset = await super()._handle_request(request, start_time, request_handler)
        if reset or not resp.keep_alive:
            # The connection ends after this reply: nothing may be answered after it.
            self._lane = None
        self._answered += 1  # its reply is written: the next may be answered here
        return resp, reset

    def request_started(self, body: Any = None) -> None:
        """The application has the request (``body``: its payload stream, watched for
        pauses while it is not all in)."""
        self._in_request = True
        self._partial = False
        self._disarm()
        if body is not None and not body.is_eof():
            self._body = body
            self._body_seen = self._clock_loop.time()
            self._body_timer = self._clock_loop.call_later(
                self._policy.body_idle_timeout_s, self._body_check
            )

    def request_finished(self) -> None:
        self._in_request = False
        self._body = None
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _body_check(self) -> None:
        self._body_timer = None
        body = self._body
        if body is None or body.is_eof() or self.transport is None:
            self._body = None
            return  # all in: what the application does with it takes the time it takes
        due = self._body_seen + self._policy.body_idle_timeout_s
        if self._clock_loop.time() < due:
            self._body_timer = self._clock_loop.call_at(due, self._body_check)
            return
        # No 408: the application may already be streaming its reply (POST /api/imports
        # answers while the body arrives), so bytes written here could land inside it.
        self._body = None
        self._policy.body_timed_out(self._peer)
        self.force_close()
        self.transport.abort()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if isinstance(exc, HttpProcessingError):
            # A request that could not be parsed: the client's fault, and the internet's
            # background noise. One line now and then, no traceback.
            self._policy.malformed(request.remote, exc)
            resp: web.StreamResponse = web.Response(
                status=status, text=f"{status} malformed request: {exc.message}"
            )
            resp.force_close()
        else:
            resp = super().handle_error(request, status, exc, message)
        resp.headers[hdrs.SERVER] = SERVER
        return resp

    def _arm(self) -> None:
        self._deadline = self._clock_loop.call_later(self._policy.header_timeout_s, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self._in_request or self.transport is None:
            return
        peer = self.transport.get_extra_info("peername")
        self._policy.timed_out(peer[0] if isinstance(peer, tuple) else None)
        if self._partial:
            self.transport.write(self._policy.timeout_reply)
        self.force_close()


@web.middleware
async def request_deadline(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Tells the connection that its request's headers are in (its deadline is off while
    the application answers) and when the answer is done."""
    protocol = request.protocol
    if not isinstance(protocol, GuardedRequestHandler):
        return await handler(request)
    protocol.request_started(request.content if request.body_exists else None)
    try:
        return await handler(request)
    finally:
        protocol.request_finished()


async def _name_the_server(request: web.Request, response: web.StreamResponse) -> None:
    response.headers[hdrs.SERVER] = SERVER


def guard_app(app: web.Application) -> None:
    """Prepare ``app`` (before it is frozen) to be served by ``serve_http``."""
    app.middlewares.insert(0, request_deadline)
    app.on_response_prepare.append(_name_the_server)


async def serve_http(
    runner: web.AppRunner,
    sock: socket.socket,
    front: str,
    metrics: NodeMetrics,
    *,
    header_timeout_s: float,
    keepalive_timeout_s: float,
    body_idle_timeout_s: float = 30.0,
    gate: ConnectionGate | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> Acceptor:
    """Serve the app of ``runner`` (set up) on the listening socket ``sock``; the caller
    closes the returned acceptor before cleaning the runner up."""
    server = runner.server
    assert server is not None, "runner.setup() first"
    loop = asyncio.get_running_loop()
    policy = HttpPolicy(
        front,
        metrics,
        header_timeout_s=header_timeout_s,
        body_idle_timeout_s=body_idle_timeout_s,
    )
    options: dict[str, Any] = {
        "keepalive_timeout": keepalive_timeout_s,
        "access_log": None,  # per-request logging costs throughput; metrics count requests
    }

    lane = runner.app.get(QUICK_ANSWERS)

    def connection(ticket: Ticket | None) -> asyncio.BaseProtocol:
        return GuardedRequestHandler(
            server, loop=loop, policy=policy, ticket=ticket, lane=lane, **options
        )

    acceptor = Acceptor(
        sock,
        front,
        connection,
        metrics,
        gate=gate,
        refusal=refusal_reply if ssl_context is None else None,
        ssl_context=ssl_context,
        handshake_timeout_s=header_timeout_s if ssl_context is not None else None,
    )
    acceptor.start()
    return acceptor
