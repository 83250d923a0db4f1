"""Challenge-response sessions of the REST API (``/api/sessions``), held in memory.

A session is created unauthenticated with a random id and a 16-byte nonce (the size of
the reference's ``ChallengeResponse.generateNonce``); answering the nonce's challenge, or
creating it with credentials, binds it to an admin ``Identity``. From then on the session
id alone (``Authorization: Handle sessionId=...``) authenticates requests, so it is a
bearer credential: 256 random bits, never logged.

Bounded and clock-free: every method takes ``now`` (monotonic seconds), a session unused
for ``idle_timeout_s`` is gone, and at most ``max_sessions`` exist. Unauthenticated and
authenticated sessions are kept in two LRU orders so that, when full, a flood of
``POST /api/sessions`` only ever pushes out other unauthenticated sessions; when every
slot holds an authenticated session, creation fails (``SessionLimitReached``, 503).

Anyone may create an unauthenticated session, so one source (its /32 or /64, as
``node.runtime.sources.peer_keys`` says; exempt networks are not counted) holds at most
``per_source_pending`` of them: past that its own creations are refused
(``SourceLimitReached``, 429), and a flood from one source cannot push anybody else's
pending session out. The default, a hundredth of the table but at least 16, means at
least a hundred sources are needed to fill it, while a client behind a busy NAT still
has room for a burst of logins in progress.

Sessions live in this process only: a restart logs everybody out, which is what the
reference (servlet sessions) does too.
"""

from __future__ import annotations

import os
import secrets
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, replace

from node.auth.identity import Identity
from node.runtime.sources import Holdings, peer_keys

NONCE_BYTES = 16
MIN_PER_SOURCE_PENDING = 16


class SessionLimitReached(Exception):
    """Every session slot holds a live authenticated session."""


class SourceLimitReached(SessionLimitReached):
    """The client holds its share of unauthenticated sessions already."""


@dataclass(slots=True)
class Session:
    id: str
    nonce: bytes
    created: float
    last_used: float
    identity: Identity | None = None
    source: str | None = None  # the source key it counts against while unauthenticated


def default_per_source_pending(max_sessions: int) -> int:
    return max(MIN_PER_SOURCE_PENDING, max_sessions // 100)


class SessionStore:
    def __init__(
        self,
        max_sessions: int,
        idle_timeout_s: float,
        *,
        per_source_pending: int | None = None,
        exempt: Iterable[str] = (),
    ):
        if max_sessions < 1 or idle_timeout_s <= 0:
            raise ValueError("max_sessions must be >= 1 and idle_timeout_s > 0")
        self.max_sessions = max_sessions
        self.idle_timeout_s = idle_timeout_s
        self.keys = peer_keys(exempt)
        self.per_source_pending = per_source_pending or default_per_source_pending(max_sessions)
        self._holdings = Holdings(self.per_source_pending)
        # Least recently used first; a session is in exactly one of the two.
        self._pending: OrderedDict[str, Session] = OrderedDict()
        self._authenticated: OrderedDict[str, Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._pending) + len(self._authenticated)

    def _expire(self, now: float) -> None:
        for table in (self._pending, self._authenticated):
            while table:
                first = next(iter(table.values()))
                if now - first.last_used < self.idle_timeout_s:
                    break
                self._drop(table, first.id)

    def _drop(self, table: OrderedDict[str, Session], session_id: str) -> Session | None:
        session = table.pop(session_id, None)
        if session is not None and table is self._pending:
            self._holdings.give_back(session.source)
        return session

    def create(self, now: float, client: str | None = None) -> Session:
        """A new unauthenticated session for ``client`` (an address; None: not counted
        per source). SourceLimitReached when that client's source holds its share."""
        self._expire(now)
        source = self.keys.key(client)
        if not self._holdings.take(source):
            raise SourceLimitReached(
                f"{(source or '').removesuffix('/32')} holds {self.per_source_pending} "
                "unauthenticated sessions, the most "
                "one source may: answer or delete them (DELETE /api/sessions/this)"
            )
        if len(self) >= self.max_sessions:
            if not self._pending:
                self._holdings.give_back(source)
                raise SessionLimitReached(f"all {self.max_sessions} sessions are in use")
            self._drop(self._pending, next(iter(self._pending)))
        session = Session(secrets.token_urlsafe(32), os.urandom(NONCE_BYTES), now, now)
        session.source = source
        self._pending[session.id] = session
        return session

    def get(self, session_id: str, now: float) -> Session | None:
        """The live session with this id (its idle clock restarts), or None."""
        table = self._authenticated if session_id in self._authenticated else self._pending
        session = table.get(session_id)
        if session is None:
            return None
        if now - session.last_used >= self.idle_timeout_s:
            self._drop(table, session_id)
            return None
        session.last_used = now
        table.move_to_end(session_id)
        return session

    def authenticate(self, session: Session, identity: Identity, now: float) -> None:
        """Bind the session to ``identity`` (a later answer replaces an earlier one)."""
        if self._drop(self._pending, session.id) is None and session.id not in self._authenticated:
            return  # deleted or expired meanwhile: nothing to bind
        session.identity = replace(identity, scheme="session")
        session.last_used = now
        self._authenticated[session.id] = session
        self._authenticated.move_to_end(session.id)

    def delete(self, session_id: str) -> bool:
        return (
            self._drop(self._pending, session_id) is not None
            or self._authenticated.pop(session_id, None) is not None
        )

    def counts(self) -> tuple[int, int]:
        """(unauthenticated, authenticated) sessions, expired ones included until swept."""
        return len(self._pending), len(self._authenticated)
