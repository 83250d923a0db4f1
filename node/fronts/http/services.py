"""What the HTTP endpoints use, built once by the node and stored on the app."""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from node.auth import (
    PEERCERT_DER,
    AuthChain,
    AuthContext,
    AuthenticationRequired,
    AuthError,
    Authorizer,
    Identity,
    SessionStore,
)
from node.auth.bearer import BearerScheme
from node.auth.handleauth import session_id_of
from node.fronts.http.errors import ApiError
from node.fronts.http.hot import HotReplies
from node.resolution.forward.build import RecursionPolicy
from node.resolution.resolver import Resolver
from node.runtime.metrics import NodeMetrics
from node.settings import Settings
from node.writes.service import WriteService
from protocol.codes import ResponseCode
from protocol.keys import PublicKey

REALM = 'Basic realm="idnode", charset="UTF-8"'


@dataclass
class HttpServices:
    settings: Settings
    resolver: Resolver
    writes: WriteService
    auth: AuthChain
    authorizer: Authorizer
    metrics: NodeMetrics
    clock: Callable[[], float]  # unix seconds (the node's clock)
    sessions: SessionStore | None = None  # REST challenge-response sessions (/api/sessions)
    # Keys the record page verifies signatures against (node.signing.signer.trust_roots).
    trust_roots: tuple[PublicKey, ...] = ()
    hot: HotReplies | None = None  # ready-to-send resolution replies (the cache is on)
    # Who may be answered through the tree for prefixes served elsewhere (None: this node
    # does not forward).
    recursion: RecursionPolicy | None = None
    bearer: BearerScheme | None = None  # issues the tokens of /identity/token

    def may_recurse(self, remote: str | None) -> bool:
        return self.recursion is not None and self.recursion.allows(remote)

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    async def identity(self, request: web.Request) -> Identity | None:
        """The authenticated caller, None for an anonymous request; an AuthError
        becomes the matching reply (401 + WWW-Authenticate, 403, 429 + Retry-After)."""
        ctx = AuthContext(
            headers=request.headers,
            peer=request.remote,
            secure=request.secure,
            extra=certificate_of(request),
        )
        try:
            return await self.auth.authenticate(ctx)
        except AuthError as exc:
            raise auth_error(exc) from None

    async def require_identity(self, request: web.Request, what: str) -> Identity:
        identity = await self.identity(request)
        if identity is None:
            err = auth_error(
                AuthenticationRequired(
                    f"{what} needs an admin: send HTTP Basic credentials index:handle "
                    "with the admin's HS_SECKEY secret, or an authenticated session "
                    '(Authorization: Handle sessionId="...", see /api/sessions)'
                )
            )
            challenge = self.session_challenge(request)
            if challenge is not None:
                err.headers["WWW-Authenticate"] = challenge
            raise err
        return identity

    def session_challenge(self, request: web.Request) -> str | None:
        """docs/rest-api.md's ``Handle sessionId="...", nonce="..."`` for a request that names a
        live session not yet authenticated: the client is using sessions, so the
        challenge to answer is that session's, not Basic."""
        sid = session_id_of(request.headers.get("Authorization"))
        if sid is None or self.sessions is None:
            return None
        session = self.sessions.get(sid, self.auth.monotonic())
        if session is None or session.identity is not None:
            return None
        nonce = base64.b64encode(session.nonce).decode("ascii")
        return f'Handle sessionId="{session.id}", nonce="{nonce}"'


SERVICES_KEY = web.AppKey("idnode.http.services", HttpServices)


def certificate_of(request: web.Request) -> dict[str, Any]:
    """The TLS client certificate of the request's connection, as AuthContext.extra
    carries it (node.auth.clientcert), or Nones."""
    transport = request.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport else None
    return {
        "peercert": transport.get_extra_info("peercert") if transport else None,
        # DER: the public key is needed, which the decoded dict leaves out. Only a
        # certificate the TLS layer verified is there (CERT_OPTIONAL, node.runtime.tls).
        PEERCERT_DER: ssl_object.getpeercert(binary_form=True) if ssl_object else None,
    }


def auth_error(exc: AuthError) -> ApiError:
    headers = {}
    if exc.status == 401:
        headers["WWW-Authenticate"] = REALM
    if exc.retry_after_s is not None:
        headers["Retry-After"] = str(exc.retry_after_s)
    return ApiError(
        ResponseCode(exc.response_code), exc.message, status=exc.status, headers=headers
    )


def services(request: web.Request) -> HttpServices:
    return request.app[SERVICES_KEY]
