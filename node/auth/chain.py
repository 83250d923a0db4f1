"""The chain of authentication schemes the HTTP front (and later others) asks.

Each scheme says whether it ``claims`` a request (recognises its credentials) and, if
so, ``authenticate``s it or raises. Schemes are tried in order; the first that claims
decides. A session scheme or a client-certificate scheme is added by appending it:
the endpoints only ever see an ``Identity`` or an ``AuthError``.

Around every scheme that sends a reusable secret (Basic, a session id) the chain
enforces the plain-HTTP policy (``http_plain_credentials``); around every scheme, the
per-client failure limit (``node.auth.gate``: the client behind trusted proxies, its
/32 or /64), checked before anything else so a blocked client costs nothing. Costly
checks reserve their failure in the gate before they run; cheap failures (a malformed
header, an unknown session) are counted here, after the fact.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Protocol

from node.auth.gate import AuthGate, shown
from node.auth.identity import (
    AuthContext,
    AuthError,
    ChecksBusy,
    CredentialsRefused,
    Identity,
    MalformedCredentials,
    TooManyFailures,
)
from node.runtime.metrics import NodeMetrics

PLAIN_CREDENTIAL_POLICIES = ("loopback", "allow", "refuse")


class AuthScheme(Protocol):
    name: str
    sends_secret: bool

    def claims(self, ctx: AuthContext) -> bool: ...

    async def authenticate(self, ctx: AuthContext) -> Identity | None:
        """The caller, or None when the credentials validly name nobody (a session not
        yet authenticated: the request is anonymous, as on the reference); raises
        AuthError when they are wrong."""
        ...


def plain_credentials_allowed(policy: str, ctx: AuthContext) -> bool:
    """Reusable secrets over a non-TLS connection: ``allow`` always, ``refuse`` never,
    ``loopback`` only from a loopback peer (traffic that never leaves the host, e.g. a
    TLS-terminating proxy on the same machine, cannot be sniffed off it)."""
    if ctx.secure or policy == "allow":
        return True
    if policy == "refuse":
        return False
    return ctx.peer_is_loopback


class AuthChain:
    def __init__(
        self,
        schemes: Sequence[AuthScheme],
        gate: AuthGate,
        metrics: NodeMetrics,
        *,
        plain_policy: str,
        monotonic: Callable[[], float],
        front: str = "http",
    ):
        if plain_policy not in PLAIN_CREDENTIAL_POLICIES:
            raise ValueError(f"unknown plain-credentials policy {plain_policy!r}")
        self.schemes = list(schemes)
        self.gate = gate
        self.metrics = metrics
        self.plain_policy = plain_policy
        self.monotonic = monotonic
        self.front = front

    def add(self, scheme: AuthScheme) -> None:
        self.schemes.append(scheme)

    def client_address(self, peer: str | None, headers: Mapping[str, str]) -> str | None:
        """The request's real client (behind trusted proxies, the forwarded one)."""
        return self.gate.client_address(peer, headers)

    async def authenticate(self, ctx: AuthContext) -> Identity | None:
        """The caller's identity; None when the request carries no credentials."""
        scheme = next((s for s in self.schemes if s.claims(ctx)), None)
        if scheme is None:
            if ctx.authorization is None:
                return None
            kind = ctx.authorization.strip().split(" ", 1)[0][:32]
            self._count("unsupported")
            raise MalformedCredentials(
                f"unsupported Authorization scheme {kind!r} (use Basic or Handle)"
            )
        if scheme.sends_secret and not plain_credentials_allowed(self.plain_policy, ctx):
            self._count(CredentialsRefused.reason)
            raise CredentialsRefused(
                "credentials over plain HTTP are refused from this address "
                f"(http_plain_credentials={self.plain_policy}); use HTTPS or a local proxy"
            )
        client = self.gate.client_key(self.gate.client_address(ctx.peer, ctx.headers))
        ctx = replace(ctx, client=client)
        now = self.monotonic()
        blocked = self.gate.blocked(client, now)
        if blocked is not None:
            self.metrics.auth_rate_limited.labels(self.front).inc()
            raise blocked
        try:
            identity = await scheme.authenticate(ctx)
        except AuthError as exc:
            if exc.counts_as_failure and not exc.counted:
                self.gate.record_failure(client, now)
            if isinstance(exc, TooManyFailures):
                self.metrics.auth_rate_limited.labels(self.front).inc()
            elif not isinstance(exc, ChecksBusy):  # the gate counts and logs those
                self._count(exc.reason)
                # The handle and the reason, never the credentials; a few lines a minute.
                self.gate.quiet.log(
                    logging.INFO,
                    "%s authentication from %s failed: %s (%s)",
                    scheme.name,
                    shown(client),
                    exc.message,
                    exc.reason,
                )
            raise
        return identity

    def _count(self, reason: str) -> None:
        self.metrics.auth_failures.labels(self.front, reason).inc()
