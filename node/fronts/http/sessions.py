"""``/api/sessions``: the Handle.Net REST API's challenge-response sessions.

As the reference's ``SessionsServlet`` (Handle.Net 9):

- ``POST /api/sessions`` -> 201 ``{"sessionId", "nonce", "authenticated"}`` and
  ``Location: /api/sessions/this``. With credentials (HTTP Basic, a client certificate)
  the new session is created already authenticated as that admin; a ``sessionId`` in
  the request is a client error (400).
- ``GET | PUT /api/sessions/this`` -> 200, the state of the session named by
  ``Authorization: Handle sessionId="..."``; when that header also answers the
  challenge (``id, type, cnonce, alg, signature``) the session is authenticated first.
  ``{"authenticated": true, "id": "300:88.118/ADMIN"}`` once it is. Without a session
  the reply tells whether the request's own credentials authenticate (a "who am I").
- ``DELETE /api/sessions/this`` -> 204.

Differences, on purpose: sessions are named by the ``Authorization`` header only, never
by a cookie (the reference also takes its servlet cookie, which would make the session
an ambient credential a cross-site page could ride); the reply always carries
``authenticated``; a failed answer is our usual error reply (403, or 429 when the
address is rate-limited) rather than the session object with 401; an unknown or expired
session is 401 everywhere. Over plain HTTP the ``http_plain_credentials`` policy applies
to session ids as to Basic secrets (the reference refuses sessions without TLS).

One client (behind trusted proxies, the forwarded one) holds a bounded share of the
unauthenticated sessions (``node.auth.sessions``): past it, 429 with Retry-After, so a
flood of anonymous ``POST /api/sessions`` cannot push out anybody else's.
"""

from __future__ import annotations

import base64
from typing import Any

from aiohttp import web

from node.auth import Identity, Session, SessionLimitReached, SessionStore
from node.auth.handleauth import session_id_of
from node.auth.identity import MalformedCredentials
from node.auth.sessions import SourceLimitReached
from node.fronts.http.app import Extension
from node.fronts.http.errors import ApiError
from node.fronts.http.reply import NO_STORE, Style, render
from node.fronts.http.services import HttpServices, auth_error, services
from protocol.codes import ResponseCode as RC

THIS = "/api/sessions/this"


def _session_id(request: web.Request) -> str | None:
    return session_id_of(request.headers.get("Authorization"))


def _store(svc: HttpServices) -> SessionStore:
    assert svc.sessions is not None, "session_routes needs HttpServices.sessions"
    return svc.sessions


def _body(session: Session | None, identity: Identity | None) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if session is not None:
        body["sessionId"] = session.id
        body["nonce"] = base64.b64encode(session.nonce).decode("ascii")
    body["authenticated"] = identity is not None
    if identity is not None:
        body["id"] = identity.actor
    return body


def _reply(request: web.Request, body: dict[str, Any], status: int, **headers: str) -> web.Response:
    return render(
        body, status=status, style=Style.of(request), headers={"Cache-Control": NO_STORE, **headers}
    )


async def create_session(request: web.Request) -> web.Response:
    svc = services(request)
    store = _store(svc)
    if _session_id(request) is not None:
        raise ApiError(RC.PROTOCOL_ERROR, "POST /api/sessions creates a session: send no sessionId")
    identity = await svc.identity(request)  # Basic or a client certificate, if any
    now = svc.auth.monotonic()
    client = svc.auth.client_address(request.remote, request.headers)
    try:
        session = store.create(now, client)
    except SourceLimitReached as exc:
        svc.metrics.http_sessions_refused.labels("per_source").inc()
        raise ApiError(
            RC.SERVER_TOO_BUSY, f"{exc}; retry later", status=429, headers={"Retry-After": "60"}
        ) from None
    except SessionLimitReached as exc:
        svc.metrics.http_sessions_refused.labels("full").inc()
        raise ApiError(
            RC.SERVER_TOO_BUSY, f"{exc}; retry later", headers={"Retry-After": "60"}
        ) from None
    if identity is not None:
        store.authenticate(session, identity, now)
        identity = session.identity
    return _reply(request, _body(session, identity), 201, Location=THIS)


async def session_state(request: web.Request) -> web.Response:
    """GET and PUT: PUT is where clients send the challenge answer, GET works as well."""
    svc = services(request)
    store = _store(svc)
    identity = await svc.identity(request)  # answers the challenge when the header does
    sid = _session_id(request)
    session = store.get(sid, svc.auth.monotonic()) if sid else None
    return _reply(request, _body(session, identity), 200)


async def delete_session(request: web.Request) -> web.Response:
    svc = services(request)
    store = _store(svc)
    await svc.identity(request)  # 401 for an unknown session; plain-HTTP policy; rate limit
    sid = _session_id(request)
    if sid is None:
        raise auth_error(
            MalformedCredentials('name the session: Authorization: Handle sessionId="..."')
        )
    store.delete(sid)
    return web.Response(status=204, headers={"Cache-Control": NO_STORE})


def session_routes() -> Extension:
    """The ``http_app`` extension serving ``/api/sessions`` (from ``HttpServices.sessions``)."""

    def extend(app: web.Application) -> None:
        r = app.router
        r.add_post("/api/sessions", create_session, name="session_create")
        r.add_post("/api/sessions/", create_session, name="session_create_slash")
        r.add_get(THIS, session_state, name="session_get")
        r.add_put(THIS, session_state, name="session_put")
        r.add_post(THIS, session_state, name="session_post")  # the reference treats POST as PUT
        r.add_delete(THIS, delete_session, name="session_delete")

    return extend
