"""The pending-challenge table on its own, its clock passed in: expiry (RC 405) then
forgetting (RC 500), and its two bounds."""

from __future__ import annotations

import pytest

from node.auth.native.challenges import PURGE_AFTER_S, Challenge, Expired, PendingChallenges
from protocol.bodies import HashType, ResolutionRequest
from protocol.codes import OpCode
from protocol.message import Envelope, Header, Message

REQUEST = Message(Envelope(), Header(OpCode.RESOLUTION), ResolutionRequest("88.118.2/X"))


def challenge(cid: int, created: float = 0.0, source: str = "192.0.2.1") -> Challenge:
    return Challenge(cid, b"n" * 16, b"d" * 32, HashType.SHA256, REQUEST, created, source=source)


def test_answered_in_time_late_then_forgotten() -> None:
    table = PendingChallenges(timeout_s=20)
    table.add(challenge(1), now=0)
    assert table.take(1, now=19.9) is not None
    assert table.take(1, now=19.9) is None  # taken once only
    table.add(challenge(2), now=0)
    with pytest.raises(Expired):
        table.take(2, now=20.1)
    table.add(challenge(3), now=0)
    assert table.take(3, now=20 + PURGE_AFTER_S + 0.1) is None  # purged: RC 500


def test_one_source_cannot_push_out_the_others() -> None:
    table = PendingChallenges(timeout_s=20, max_entries=100, max_per_source=4)
    table.add(challenge(1, source="198.51.100.7"), now=0)
    for cid in range(10, 60):
        table.add(challenge(cid, source="203.0.113.9"), now=0)
    assert 1 in table  # the flood evicted only its own
    assert [cid for cid in range(10, 60) if cid in table] == [56, 57, 58, 59]
    assert len(table) == 5


def test_the_whole_table_is_bounded_too() -> None:
    table = PendingChallenges(timeout_s=20, max_entries=3, max_per_source=3)
    for cid, source in enumerate(("a", "b", "c", "d", "e")):
        table.add(challenge(cid, source=source), now=0)
    assert [cid in table for cid in range(5)] == [False, False, True, True, True]
    # Counts stay right after evictions: "a" may hold its full share again.
    for cid in range(100, 103):
        table.add(challenge(cid, source="a"), now=0)
    assert all(cid in table for cid in range(100, 103))
