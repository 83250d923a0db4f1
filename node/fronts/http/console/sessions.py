"""Console login sessions, their cookie, and the CSRF checks every POST passes.

A session is a row of a bounded in-process table named by an opaque random id (the
cookie's value); it holds the authenticated identity, a synchronizer token for forms and
the language chosen. It ends after ``console_session_idle_timeout_s`` unused, after
``console_session_lifetime_s`` however used, at logout, or when the table is full and
it is the one unused longest. Times are read from the clock passed in (the node's
monotonic clock), so tests step it.

The cookie is ``HttpOnly; SameSite=Strict; Path=/console/`` (``Secure`` over TLS or
behind a trusted proxy that says it terminated TLS): a browser sends it only to the
console, script cannot read it, and a cross-site page cannot make the browser send it.
Only the console reads it; the API's authentication never looks at cookies
(node.fronts.http.sessions says why), so a console login is no ambient credential for
``/api``.

CSRF: every POST under /console/ must come from a page of this origin (``Origin``, or
``Referer`` when a browser sends no Origin) and, once logged in, carry the session's
token in the form field ``csrf``. SameSite=Strict alone would do in current browsers;
the two checks keep it safe in those that ignore SameSite.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web

from node.auth import Identity
from node.auth.proxies import TrustedProxies

COOKIE = "idnode_console"
PATH = "/console/"
CSRF_FIELD = "csrf"


@dataclass
class ConsoleSession:
    id: str
    identity: Identity
    csrf: str
    created: float  # monotonic seconds
    used: float
    lang: str | None = None  # chosen with ?lang=; None: the browser's Accept-Language


class ConsoleSessions:
    def __init__(
        self,
        *,
        max_sessions: int,
        idle_timeout_s: float,
        lifetime_s: float,
        monotonic: Callable[[], float],
    ):
        self.max_sessions = max_sessions
        self.idle_timeout_s = idle_timeout_s
        self.lifetime_s = lifetime_s
        self.monotonic = monotonic
        self._rows: OrderedDict[str, ConsoleSession] = OrderedDict()  # least recently used first

    def __len__(self) -> int:
        return len(self._rows)

    def create(self, identity: Identity, lang: str | None = None) -> ConsoleSession:
        now = self.monotonic()
        self._expire(now)
        while len(self._rows) >= self.max_sessions:
            self._rows.popitem(last=False)
        session = ConsoleSession(
            secrets.token_urlsafe(32), identity, secrets.token_urlsafe(32), now, now, lang
        )
        self._rows[session.id] = session
        return session

    def get(self, sid: str | None) -> ConsoleSession | None:
        """The live session named ``sid`` (its idle time restarts), or None."""
        if not sid:
            return None
        session = self._rows.get(sid)
        if session is None:
            return None
        now = self.monotonic()
        if self._expired(session, now):
            del self._rows[sid]
            return None
        session.used = now
        self._rows.move_to_end(sid)
        return session

    def delete(self, sid: str) -> None:
        self._rows.pop(sid, None)

    def _expired(self, s: ConsoleSession, now: float) -> bool:
        return now - s.used >= self.idle_timeout_s or now - s.created >= self.lifetime_s

    def _expire(self, now: float) -> None:
        for sid in [sid for sid, s in self._rows.items() if self._expired(s, now)]:
            del self._rows[sid]


def is_https(request: web.Request, proxies: TrustedProxies) -> bool:
    """The browser talks HTTPS to us: TLS here, or a trusted proxy (a loopback one by
    default) says it terminated TLS (``X-Forwarded-Proto: https``)."""
    if request.secure:
        return True
    proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    if proto != "https" or request.remote is None:
        return False
    try:
        return proxies.trusted(ipaddress.ip_address(request.remote))
    except ValueError:
        return False


def set_cookie(resp: web.StreamResponse, session: ConsoleSession, secure: bool) -> None:
    resp.set_cookie(
        COOKIE, session.id, path=PATH, httponly=True, samesite="Strict", secure=secure or None
    )


def clear_cookie(resp: web.StreamResponse, secure: bool) -> None:
    resp.set_cookie(
        COOKIE,
        "",
        path=PATH,
        max_age=0,
        expires="Thu, 01 Jan 1970 00:00:00 GMT",
        httponly=True,
        samesite="Strict",
        secure=secure or None,
    )


def same_origin(request: web.Request) -> bool:
    """The POST came from a page of this site: its Origin (or, without one, its
    Referer) names the host the request was sent to. Behind a proxy the scheme differs
    (the browser's https, our http), so the host and port are compared."""
    host = (request.headers.get("Host") or "").lower()
    origin = request.headers.get("Origin")
    if origin is None:
        origin = request.headers.get("Referer")
    if not origin or origin == "null" or not host:
        return False
    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and parts.netloc.lower() == host


def token_ok(session: ConsoleSession, sent: str | None) -> bool:
    return sent is not None and hmac.compare_digest(session.csrf.encode(), sent.encode())
