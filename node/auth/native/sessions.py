"""Native sessions (opcode 400): a key agreed by Diffie-Hellman, then every request in
the session MACed with it (docs/authentication.md, "Sessions").

A session starts unauthenticated; the first challenge answered by the identity named at
setup authenticates it, and later requests are checked by their MAC alone. Counters:
each request carries the client's counter, which may arrive out of order over UDP but
never twice (admin capture #15: a duplicate is RC 505; #21: the reference never checks
counter 0, which lets such a message replay — here every counter is checked, 0 refused).
The table is bounded (least recently used out first) and sessions end after their
timeout (capped by the node's) or idle time. Clocks come in as arguments.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from node.auth.identity import Identity
from protocol.message import Version

# Counters remembered per session to refuse a replay; one older than all of them is
# refused too (a window, as IPsec's), so the memory per session is bounded.
COUNTER_WINDOW = 1024


class CounterReused(Exception):
    """A counter already used in this session, or older than the window (RC 505)."""


@dataclass(eq=False)
class NativeSession:
    id: int
    key: bytes  # the session key (32 bytes): MACs, and its first 16 encrypt
    identity_handle: str  # named at setup: only this identity may authenticate it
    identity_index: int
    version: Version
    expires: float  # monotonic seconds
    idle_timeout_s: float
    last_used: float
    authenticated: Identity | None = None
    sent: int = 0  # our own counter, for MACed replies
    _seen: set[int] = field(default_factory=set, repr=False)
    _floor: int = 0  # every counter at or below this one is refused

    def accept_counter(self, counter: int) -> None:
        if counter <= self._floor or counter in self._seen:
            raise CounterReused(f"duplicate session counter {counter} in session {self.id}")
        self._seen.add(counter)
        if len(self._seen) > COUNTER_WINDOW:
            self._floor = min(self._seen)
            self._seen.discard(self._floor)

    def next_counter(self) -> int:
        self.sent += 1
        return self.sent


class NativeSessions:
    def __init__(self, *, max_sessions: int, max_lifetime_s: float, idle_timeout_s: float):
        self.max_sessions = max_sessions
        self.max_lifetime_s = max_lifetime_s
        self.idle_timeout_s = idle_timeout_s
        self._sessions: OrderedDict[int, NativeSession] = OrderedDict()

    def __contains__(self, session_id: int) -> bool:
        return session_id in self._sessions

    def __len__(self) -> int:
        return len(self._sessions)

    def open(
        self,
        session_id: int,
        key: bytes,
        identity_handle: str,
        identity_index: int,
        version: Version,
        lifetime_s: float,
        now: float,
    ) -> NativeSession:
        while len(self._sessions) >= self.max_sessions:
            self._sessions.popitem(last=False)
        lifetime = min(max(lifetime_s, 1.0), self.max_lifetime_s)
        session = NativeSession(
            session_id, key, identity_handle, identity_index, version,
            expires=now + lifetime, idle_timeout_s=self.idle_timeout_s, last_used=now,
        )  # fmt: skip
        self._sessions[session_id] = session
        return session

    def get(self, session_id: int, now: float) -> NativeSession | None:
        """The live session with this id (its use counts as activity), else None."""
        session = self._sessions.get(session_id)
        if session is None:
            return None
        if now >= session.expires or now - session.last_used > session.idle_timeout_s:
            del self._sessions[session_id]
            return None
        session.last_used = now
        self._sessions.move_to_end(session_id)
        return session

    def close(self, session_id: int) -> bool:
        return self._sessions.pop(session_id, None) is not None
