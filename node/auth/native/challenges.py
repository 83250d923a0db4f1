"""Challenges sent (RC 402) and not yet answered, keyed by the challenge id the 402's
envelope carries and the answer (opcode 200) comes back with.

As the reference (admin capture #13, #14): an answer after ``timeout_s`` gets RC 405
while the challenge is still remembered; the reference's purge thread forgets it within
30 s more, after which an answer gets RC 500 (no such session). The table is bounded
twice: one source holds at most ``max_per_source`` challenges (its oldest goes first),
so a flood from one address cannot push out everyone else's; and when the whole table
is full the oldest challenge goes first. Clocks come in as arguments.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from protocol.bodies import HashType
from protocol.message import Message

# How long an expired challenge is remembered (answered RC 405) before it is forgotten
# (answered RC 500): the reference's purge interval.
PURGE_AFTER_S = 30.0


@dataclass(eq=False)
class Challenge:
    id: int
    nonce: bytes
    digest: bytes  # of the original request, as the 402 sent it
    hash_type: HashType
    request: Message  # the original request, run again once answered
    created: float  # monotonic seconds
    session_id: int = 0  # the session the original request came in (0: none)
    # What the front knows of where the original came from (a TCP connection's state:
    # an IDIS login marks it logged in). Opaque here.
    origin: Any = field(default=None, repr=False)
    source: str = ""  # the client's address, for the per-source bound


class Expired(Exception):
    """The challenge was answered too late (RC 405)."""


class PendingChallenges:
    def __init__(self, *, timeout_s: float, max_entries: int = 10_000, max_per_source: int = 64):
        self.timeout_s = timeout_s
        self.max_entries = max_entries
        self.max_per_source = max_per_source
        self._pending: OrderedDict[int, Challenge] = OrderedDict()
        self._by_source: dict[str, deque[int]] = {}

    def __contains__(self, challenge_id: int) -> bool:
        return challenge_id in self._pending

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, challenge: Challenge, now: float) -> None:
        self.purge(now)
        mine = self._by_source.get(challenge.source)
        while mine and len(mine) >= self.max_per_source:
            self._drop(mine[0])
        while len(self._pending) >= self.max_entries:
            self._drop(next(iter(self._pending)))
        self._pending[challenge.id] = challenge
        self._by_source.setdefault(challenge.source, deque()).append(challenge.id)

    def take(self, challenge_id: int, now: float) -> Challenge | None:
        """The challenge answered with this id, removed; None if unknown (RC 500).
        Raises Expired (RC 405) when it is remembered but too old."""
        self.purge(now)
        challenge = self._drop(challenge_id)
        if challenge is not None and now - challenge.created > self.timeout_s:
            raise Expired(f"challenge {challenge_id} was answered after {self.timeout_s:g} s")
        return challenge

    def purge(self, now: float) -> None:
        limit = self.timeout_s + PURGE_AFTER_S
        while self._pending:
            oldest = next(iter(self._pending.values()))
            if now - oldest.created <= limit:
                return
            self._drop(oldest.id)

    def _drop(self, challenge_id: int) -> Challenge | None:
        challenge = self._pending.pop(challenge_id, None)
        if challenge is not None:
            mine = self._by_source[challenge.source]
            mine.remove(challenge_id)  # at most max_per_source long
            if not mine:
                del self._by_source[challenge.source]
        return challenge
