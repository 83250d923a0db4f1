"""The abuse benchmark's own pieces, cheaply: the requests its attacks and probes make
are what they claim to be (decoded by the protocol package, reassembled or not), its
figures add up, and one whole run with every attack for a fraction of a second against
a real node yields every row. (The benchmark itself: loadtest/abuse.py; the goals are
asserted by tests/e2e/test_abuse.py.)"""

from __future__ import annotations

import math
from contextlib import ExitStack

import pytest

from loadtest import amplification
from loadtest.abuse import abuse_report, parse_args
from loadtest.abuse_stage import ATTACKS, DEMO_ROLL, LARGEST, MISSING
from loadtest.attacks import (
    ATTACKER,
    ConnectionHog,
    Counts,
    FragmentFlood,
    MissFlood,
    Target,
    resolution,
    source_addresses,
    with_request_id,
)
from loadtest.polite import POLITE, Politeness, Probe
from protocol.bodies import ResolutionRequest, SiteInfoRequest
from protocol.codes import OpCode, OpFlag
from protocol.fragment import Reassembler
from protocol.message import MalformedMessage, decode

NOWHERE = Target("127.0.0.1", 9, 9)


def test_attacker_and_polite_client_are_different_networks() -> None:
    assert ATTACKER.rsplit(".", 1)[0] != POLITE.rsplit(".", 1)[0]  # another /24
    assert source_addresses("127.0.1.2", 3) == ["127.0.1.2", "127.0.1.3", "127.0.1.4"]


def test_flood_requests_decode_as_what_they_claim() -> None:
    misses = MissFlood(NOWHERE, prefix="88.118.2").datagrams()
    first, second = decode(next(misses)), decode(next(misses))
    assert isinstance(first.body, ResolutionRequest) and isinstance(second.body, ResolutionRequest)
    assert (
        first.body.handle.startswith("88.118.2/MISS-") and first.body.handle != second.body.handle
    )

    cert = decode(resolution(DEMO_ROLL, OpFlag.CERT))
    assert cert.header.flags & OpFlag.CERT and cert.header.opcode == OpCode.RESOLUTION
    assert decode(with_request_id(resolution(DEMO_ROLL), 77)).envelope.request_id == 77

    # A bogus first fragment opens an entry in a reassembly table that never completes.
    table = Reassembler()
    fragments = FragmentFlood(NOWHERE).datagrams()
    for _ in range(10):
        assert table.feed(next(fragments), now=0.0, source="attacker") is None
    assert table.pending == 10

    kinds = amplification.request_kinds(DEMO_ROLL, LARGEST, MISSING)
    assert isinstance(decode(kinds["GET_SITE_INFO"]).body, SiteInfoRequest)
    with pytest.raises(MalformedMessage):
        decode(kinds["malformed request"])
    assert isinstance(decode(kinds["resolution, largest record"]).body, ResolutionRequest)


def test_politeness_figures() -> None:
    m = Politeness(
        [Probe("udp_cached", True, 0.001 * n) for n in range(1, 99)]
        + [Probe("udp_cached", False, 0.2), Probe("tcp_cached", False, 0.5, "timeout")]
    )
    assert m.share_ok() == 0.98
    assert m.share_ok("tcp_cached") == 0.0
    assert m.percentile_ms(0.5) == pytest.approx(50.0)
    assert m.p99_ms() == pytest.approx(200.0)  # failures count at the time they took
    assert m.failures() == {"udp_cached: late": 1, "tcp_cached: timeout": 1}
    assert math.isnan(Politeness().share_ok())
    assert amplification.bound(1180, 80) == pytest.approx(15.0)
    assert "sent 300 (100/s)" in Counts(3.0, sent=300).summary()
    assert MissFlood(NOWHERE, rate_per_s=3000).scale(0.01).rate_per_s == 30
    hog = ConnectionHog(NOWHERE, record=LARGEST, max_connections=19_000).scale(0.01)
    assert hog.max_connections == 190


def test_one_short_run_yields_every_row(database_url: str) -> None:
    args = parse_args(
        [
            "--database-url",
            database_url,
            "--seconds",
            "0.3",
            "--rolls",
            "300",
            "--scale",
            "0.01",
            "--samples",
            "1",
        ]
    )
    with ExitStack() as stack:
        report = abuse_report(args, stack)
    assert not [n for n in report.notes if "full strength" in n], report.notes
    assert [r.bench for r in report.attack_rows] == [a for a in ATTACKS for _ in range(2)]
    for row in report.attack_rows:
        assert row.ratio is not None and 0.0 <= row.ratio <= 1.0, row
        assert row.p99_ms is not None and row.p99_ms > 0, row
    assert set(report.attackers) == set(ATTACKS)
    assert all(c.sent > 0 for c in report.attackers.values()), report.attackers
    kinds = {a.kind: a for a in report.amplification_rows}
    assert set(kinds) == set(amplification.request_kinds(DEMO_ROLL, LARGEST, MISSING))
    assert kinds["resolution, not found"].reply_bytes > 0  # the node answered from 127.0.1.2
    assert len(report.lines()) > len(report.rows())
