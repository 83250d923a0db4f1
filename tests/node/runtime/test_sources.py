"""Per-source limit primitives (node.runtime.sources): which network a client counts
as, a token bucket per source on a clock the test steps, and counts of things held."""

from __future__ import annotations

import pytest

from node.runtime.sources import Holdings, RateLimiter, SourceKeys, peer_keys
from tests.node.http_support import SteppedClock

LOOPBACK = ("127.0.0.0/8", "::1/128")


@pytest.mark.parametrize(
    ("host", "udp_key", "peer_key"),
    [
        ("192.0.2.77", "192.0.2.0/24", "192.0.2.77/32"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1::/56", "2001:db8:1:2::/64"),
        ("2001:db8:1:ff:ffff::1", "2001:db8:1::/56", "2001:db8:1:ff::/64"),
        # An IPv4 client on a dual-stack socket is the IPv4 network it comes from.
        ("::ffff:192.0.2.77", "192.0.2.0/24", "192.0.2.77/32"),
        ("fe80::1:2%eth0", "fe80::/56", "fe80::/64"),  # the zone is not part of the key
    ],
)
def test_keys(host: str, udp_key: str, peer_key: str) -> None:
    assert SourceKeys(LOOPBACK).key(host) == udp_key
    assert peer_keys(LOOPBACK).key(host) == peer_key


def test_neighbours_share_a_udp_key_but_not_a_peer_key() -> None:
    udp, peer = SourceKeys(), peer_keys()
    assert udp.key("198.51.100.1") == udp.key("198.51.100.254") != udp.key("198.51.101.1")
    assert peer.key("198.51.100.1") != peer.key("198.51.100.2")
    assert udp.key("2001:db8:0:ff::1") == udp.key("2001:db8:0:1::1")  # one /56
    assert udp.key("2001:db8:0:100::1") != udp.key("2001:db8:0:ff::1")


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.0.1.2", "::1", "::ffff:127.0.0.1", "10.9.8.7", "fd00::5"]
)
def test_exempt_networks_have_no_key(host: str) -> None:
    keys = SourceKeys((*LOOPBACK, "10.0.0.0/8", "fd00::/8"))
    assert keys.key(host) is None
    assert peer_keys((*LOOPBACK, "10.0.0.0/8", "fd00::/8")).key(host) is None


def test_nothing_is_exempt_when_told_so() -> None:
    keys = SourceKeys(())
    assert keys.key("127.0.0.1") == "127.0.0.0/24"
    assert keys.key("127.0.0.2") == keys.key("127.0.0.1") != keys.key("127.0.1.2")
    assert keys.key("::1") == "::/56"
    assert keys.key(None) is None  # no address (a Unix socket): nothing to count against


def test_keys_are_remembered_within_a_bound() -> None:
    keys = SourceKeys(LOOPBACK)
    for n in range(70_000):
        keys.key(f"10.{n >> 16}.{(n >> 8) & 255}.{n & 255}")
    assert len(keys._memo) <= 65_536
    assert keys.key("10.0.0.1") == "10.0.0.0/24"


def test_rate_limiter_burst_then_refill() -> None:
    clock = SteppedClock()
    limiter = RateLimiter(2.0, burst=3)
    assert [limiter.allow("a", clock()) for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("b", clock())  # another source has its own bucket
    clock.advance(0.25)  # half a token
    assert not limiter.allow("a", clock())
    clock.advance(0.25)  # the other half
    assert limiter.allow("a", clock())
    assert not limiter.allow("a", clock())
    clock.advance(100.0)  # refills to the burst, no further
    assert [limiter.allow("a", clock()) for _ in range(4)] == [True, True, True, False]


def test_rate_limiter_steady_rate() -> None:
    clock = SteppedClock()
    limiter = RateLimiter(10.0)  # burst defaults to one second's worth
    allowed = 0
    for _ in range(1000):  # 100 per second offered for 10 s
        allowed += limiter.allow("a", clock())
        clock.advance(0.01)
    assert allowed == pytest.approx(10 + 10 * 10, abs=1)


def test_rate_limiter_exempt_and_unlimited() -> None:
    clock = SteppedClock()
    assert all(RateLimiter(1.0).allow(None, clock()) for _ in range(10))
    assert all(RateLimiter(0).allow("a", clock()) for _ in range(10))
    assert RateLimiter(0).tracked() == 0


def test_rate_limiter_table_is_bounded() -> None:
    clock = SteppedClock()
    limiter = RateLimiter(1.0, max_tracked=100)
    for n in range(1000):
        limiter.allow(f"k{n}", clock())
    assert limiter.tracked() == 100
    # The newest sources are the ones still tracked.
    assert not limiter.allow("k999", clock())


def test_holdings_take_and_give_back() -> None:
    held = Holdings(2)
    assert held.take("a") and held.take("a") and not held.take("a")
    assert held.take("b") and held.held("a") == 2 and held.sources() == 2
    held.give_back("a")
    assert held.held("a") == 1 and held.take("a") and not held.take("a")
    held.give_back("a")
    held.give_back("a")
    held.give_back("b")
    assert held.sources() == 0 and held.held("a") == 0
    held.give_back("a")  # a stray give-back cannot make room in advance
    assert held.take("a") and held.take("a") and not held.take("a")
    assert all(held.take(None) for _ in range(10))  # exempt: never counted
    assert held.held(None) == 0 and held.sources() == 1
