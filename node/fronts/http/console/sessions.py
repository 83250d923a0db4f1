"""Console login sessions, their cookie, and the CSRF checks every POST passes.

A session is a row of the registry's ``console_sessions`` table (registry.console), so
every worker process and every node on one registry knows it: the kernel hands each new
connection to any worker (``--workers N``), a load balancer to any node. The browser's
cookie holds an opaque random id; the table holds only its SHA-256 digest (a dump or a
backup holds no live credential), with the authenticated identity, a synchronizer token
for forms and the language chosen.

A session ends after ``console_session_idle_timeout_s`` unused, after
``console_session_lifetime_s`` however used, at logout (its row deleted: every worker
sees it at the next request), or at a login when its identity holds
``console_sessions_per_identity_max`` sessions or the table ``console_sessions_max``,
and it is the one unused longest. Expired rows are deleted at every login and whenever
one is presented. Its use is written at most every ``TOUCH_S`` seconds, not on every
request, so a session may end up to that much before its idle timeout counted from its
very last request. Times are read from the clock passed in (the node's wall clock: rows
are compared across processes and machines), so tests step it.

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

import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

from aiohttp import web

from node.auth import Identity
from node.auth.proxies import TrustedProxies
from registry.console import ConsoleStore, SessionRow

COOKIE = "idnode_console"
PATH = "/console/"
CSRF_FIELD = "csrf"
TOUCH_S = 5.0  # a session's last use is written at most this often
MAX_COOKIE_CHARS = 200  # a longer value names no session (ours are 43)


def digest(sid: str) -> bytes:
    """What the table holds for a cookie value."""
    return hashlib.sha256(sid.encode("utf-8")).digest()


def _at(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


@dataclass
class ConsoleSession:
    id: str  # the cookie's value: in this request's memory only, never stored
    identity: Identity
    csrf: str
    created: float  # unix seconds, the node's wall clock
    used: float
    lang: str | None = None  # chosen with ?lang=; None: the browser's Accept-Language


class ConsoleSessions:
    def __init__(
        self,
        store: ConsoleStore,
        *,
        max_sessions: int,
        max_per_identity: int,
        idle_timeout_s: float,
        lifetime_s: float,
        clock: Callable[[], float],
    ):
        self.store = store
        self.max_sessions = max_sessions
        self.max_per_identity = max_per_identity
        self.idle_timeout_s = idle_timeout_s
        self.lifetime_s = lifetime_s
        self.clock = clock

    def _expires(self, created: float, used: float) -> float:
        return min(used + self.idle_timeout_s, created + self.lifetime_s)

    async def count(self) -> int:
        return await self.store.count_sessions()

    async def create(self, identity: Identity, lang: str | None = None) -> ConsoleSession:
        now = self.clock()
        session = ConsoleSession(
            secrets.token_urlsafe(32), identity, secrets.token_urlsafe(32), now, now, lang
        )
        row = SessionRow(
            digest(session.id),
            identity.handle,
            identity.index,
            identity.scheme,
            session.csrf,
            lang,
            _at(now),
            _at(now),
            _at(self._expires(now, now)),
        )
        await self.store.create_session(
            row,
            now=_at(now),
            max_total=self.max_sessions,
            max_per_identity=self.max_per_identity,
        )
        return session

    async def get(self, sid: str | None) -> ConsoleSession | None:
        """The live session named ``sid`` (its idle time restarts), or None."""
        if not sid or len(sid) > MAX_COOKIE_CHARS:
            return None
        now = self.clock()
        row = await self.store.get_session(digest(sid), _at(now))
        if row is None:
            return None
        created, used = row.created_at.timestamp(), row.used_at.timestamp()
        if now - used >= TOUCH_S:
            used = now
            await self.store.touch_session(row.digest, _at(now), _at(self._expires(created, now)))
        identity = Identity(row.identity, row.identity_index, row.scheme)
        return ConsoleSession(sid, identity, row.csrf, created, used, row.lang)

    async def set_lang(self, session: ConsoleSession, lang: str) -> None:
        if session.lang != lang:
            session.lang = lang
            await self.store.set_session_lang(digest(session.id), lang)

    async def delete(self, sid: str) -> None:
        await self.store.delete_session(digest(sid))


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
