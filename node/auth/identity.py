"""Who is asking, and how authentication can fail.

``AuthContext`` is what a scheme may look at, independent of the HTTP library, so a
session scheme (``Authorization: Handle sessionId=...``) or a client-certificate scheme
can be added to the chain without the endpoints knowing.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from protocol.codes import ResponseCode
from protocol.handle import normalise


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated admin: the value ``index:handle`` that proved it."""

    handle: str  # registered spelling
    index: int
    scheme: str  # "basic", "session", "client-cert"

    @property
    def key(self) -> str:
        return normalise(self.handle)

    @property
    def actor(self) -> str:
        """How history rows name this admin."""
        return f"{self.index}:{self.handle}"


@dataclass(frozen=True, slots=True)
class AuthContext:
    headers: Mapping[str, str]
    peer: str | None  # client IP address as text
    secure: bool  # the transport is TLS
    extra: Mapping[str, Any] = field(default_factory=dict)  # e.g. the peer certificate
    # The key the client's failures count against (its network, behind trusted proxies
    # the forwarded client's): set by the chain (``AuthGate.client_key``).
    client: str = "unknown"

    @property
    def authorization(self) -> str | None:
        return self.headers.get("Authorization")

    @property
    def peer_is_loopback(self) -> bool:
        if self.peer is None:
            return False
        try:
            addr = ipaddress.ip_address(self.peer.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return addr.is_loopback


class AuthError(Exception):
    """Authentication did not succeed. ``status`` is the HTTP status: 401 (with a
    challenge) when credentials are missing or wrong, 403 when they are refused unread
    or malformed, 429 when rate-limited (docs/rest-api.md)."""

    status = 403
    response_code = ResponseCode.AUTHENTICATION_FAILED
    reason = "failed"  # metrics label
    # Counts towards the per-address failure limit. False only for refusals that say
    # nothing about whether the caller holds the credentials (an unsupported method).
    counts_as_failure = True
    # Already counted: a costly check reserved its failure before it ran
    # (``node.auth.gate``), so the chain must not count it again.
    counted = False

    def __init__(self, message: str, *, retry_after_s: int | None = None):
        super().__init__(message)
        self.retry_after_s = retry_after_s

    @property
    def message(self) -> str:
        return str(self.args[0])


class CredentialsRejected(AuthError):
    """Credentials were checked and are wrong (or name no usable secret). 401 with a
    challenge, as the reference answers: REST clients (pyhandle, b2handle) key on 401."""

    status = 401

    def __init__(self, message: str, reason: str, *, counted: bool = False):
        super().__init__(message)
        self.reason = reason
        self.counted = counted


class MalformedCredentials(AuthError):
    response_code = ResponseCode.INVALID_CREDENTIAL
    reason = "malformed"


class CredentialsRefused(AuthError):
    """Credentials were not even looked at: the transport policy forbids them."""

    status = 403
    response_code = ResponseCode.INVALID_CREDENTIAL
    reason = "plain_http"


class TooManyFailures(AuthError):
    status = 429
    response_code = ResponseCode.SERVER_TOO_BUSY
    reason = "rate_limited"
    counts_as_failure = False  # nothing was checked


class ChecksBusy(AuthError):
    """Too many password and key checks are waiting for a worker thread: refused at once
    (503 with Retry-After), nothing checked, nothing counted against the client."""

    status = 503
    response_code = ResponseCode.SERVER_TOO_BUSY
    reason = "busy"
    counts_as_failure = False


class AuthenticationRequired(AuthError):
    status = 401
    response_code = ResponseCode.AUTHENTICATION_NEEDED
    reason = "missing"


class SessionUnknown(AuthenticationRequired):
    """The request names a session that does not exist (never did, expired, deleted).
    401 as the reference answers a stale session: the cure is a new session."""

    reason = "unknown_session"


class MethodRefused(AuthError):
    """A well-formed answer by a method this node cannot check (HS_SECKEY challenges)."""

    response_code = ResponseCode.INVALID_CREDENTIAL
    counts_as_failure = False

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason
