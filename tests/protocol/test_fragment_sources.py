"""Reassembly shared fairly between sources: a cap on the messages one source may have
half-received, so a source sending bogus first fragments evicts only its own, never
another's (docs/protocol.md, "What the node does over UDP"). The clock is passed in."""

from __future__ import annotations

from protocol.bodies import ResolutionRequest
from protocol.codes import OpCode
from protocol.fragment import Reassembler, fragment_encoded
from protocol.message import Envelope, Header, Message, encode

TYPES = tuple(f"NO-SUCH-TYPE-{n:03d}" for n in range(40))


def two_fragments(request_id: int) -> list[bytes]:
    """A resolution request too long for one datagram (many types): two fragments."""
    data = encode(
        Message(
            Envelope(request_id=request_id),
            Header(OpCode.RESOLUTION),
            ResolutionRequest("88.118.2/ABC123", (), TYPES),
        )
    )
    parts = fragment_encoded(data)
    assert len(parts) == 2
    return [bytes(p) for p in parts]


def test_one_source_flooding_first_fragments_cannot_evict_another_source() -> None:
    ra = Reassembler(max_pending=256, max_pending_per_source=4)
    first, second = two_fragments(7)
    assert ra.feed(first, now=0.0, source=("192.0.2.1", 5000)) is None
    for n in range(300):  # what found the shared table: 300 bogus first fragments
        ra.feed(two_fragments(1000 + n)[0], now=0.0, source=("198.51.100.9", 4000))
    assert ra.pending == 5  # the legitimate one and the flooder's 4 newest
    assert ra.source_evicted == 296 and ra.evicted == 0
    whole = ra.feed(second, now=0.0, source=("192.0.2.1", 5000))
    assert whole == first + second[20:]


def test_owner_counts_several_ports_of_one_address_together() -> None:
    """``source`` keeps conversations apart (address and port); ``owner`` is what the
    cap counts (the address): a flooder changing ports is still one source."""
    ra = Reassembler(max_pending_per_source=2)
    legit_first, legit_second = two_fragments(1)
    ra.feed(legit_first, now=0.0, source=("192.0.2.1", 5000), owner="192.0.2.1")
    for port in range(10):
        ra.feed(
            two_fragments(50 + port)[0],
            now=0.0,
            source=("198.51.100.9", port),
            owner="198.51.100.9",
        )
    assert ra.pending == 3 and ra.sources == 2 and ra.source_evicted == 8
    assert ra.feed(legit_second, now=0.0, source=("192.0.2.1", 5000), owner="192.0.2.1") is not None
    # The same request id from another port of the legitimate address is its own message.
    other_first, _ = two_fragments(1)
    assert ra.feed(other_first, now=0.0, source=("192.0.2.1", 5001), owner="192.0.2.1") is None
    assert ra.pending == 3


def test_a_full_table_evicts_from_the_source_holding_most() -> None:
    ra = Reassembler(max_pending=4, max_pending_per_source=3)
    ra.feed(two_fragments(1)[0], now=0.0, source="a")
    for n in range(3):
        ra.feed(two_fragments(10 + n)[0], now=1.0, source="flood")
    assert ra.pending == 4
    # A newcomer needs room: the flooder (3 held) gives up its oldest, not "a" (1 held),
    # although "a"'s message is the oldest in the table.
    ra.feed(two_fragments(20)[0], now=2.0, source="b")
    assert ra.evicted == 1 and ra.pending == 4
    assert ra.feed(two_fragments(1)[1], now=2.0, source="a") is not None
    assert ra.feed(two_fragments(10)[1], now=2.0, source="flood") is None  # evicted: restarts


def test_expiry_and_completion_forget_their_source() -> None:
    ra = Reassembler(timeout_s=5.0, max_pending_per_source=4)
    for n in range(3):
        ra.feed(two_fragments(n)[0], now=float(n), source="s")
    first, second = two_fragments(9)
    ra.feed(first, now=3.0, source="t")
    assert ra.sources == 2
    assert ra.feed(second, now=3.0, source="t") is not None
    assert ra.sources == 1
    assert ra.expire(6.9) == 2 and ra.pending == 1 and ra.sources == 1
    assert ra.expire(7.0) == 1 and ra.pending == 0 and ra.sources == 0 and ra.expired == 3


def test_no_cap_without_a_limit() -> None:
    """The default (a client reassembling one server's replies): no per-source cap."""
    ra = Reassembler()
    for n in range(100):
        ra.feed(two_fragments(n)[0], now=0.0, source="server")
    assert ra.pending == 100 and ra.source_evicted == 0
