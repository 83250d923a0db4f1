"""The connection caps and the file-descriptor budget on their own: which refusal comes
first, what a ticket gives back, how the budget counts between two listings of the
descriptor table, and the rate-limited log line. Clocks and counts are passed in."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import CollectorRegistry

from node.runtime.conns import ConnectionGate, FdBudget, Refusal, Ticket
from node.runtime.lograte import LogEvery
from node.runtime.metrics import NodeMetrics
from node.runtime.sources import peer_keys
from tests.node.http_support import SteppedClock


class Table:
    """A descriptor table the test fills by hand."""

    def __init__(self, open_fds: int):
        self.open_fds = open_fds
        self.listings = 0

    def count(self) -> int:
        self.listings += 1
        return self.open_fds


def gate(
    fds: FdBudget, *, max_connections: int = 10, per_source: int = 2, exempt: tuple[str, ...] = ()
) -> tuple[ConnectionGate, NodeMetrics]:
    metrics = NodeMetrics(CollectorRegistry(), "test", "secondary")
    return (
        ConnectionGate(
            "http",
            metrics,
            max_connections=max_connections,
            per_source=per_source,
            keys=peer_keys(exempt),
            fds=fds,
        ),
        metrics,
    )


def refused(metrics: NodeMetrics, reason: Refusal) -> float:
    labels = {"front": "http", "reason": reason.value}
    return metrics.registry.get_sample_value("idnode_connections_refused_total", labels) or 0.0


def test_per_source_then_global_caps_and_tickets_give_back() -> None:
    fds = FdBudget(8, limit=1000, count=lambda: 20)
    g, metrics = gate(fds, max_connections=3, per_source=2)
    a1, a2 = g.admit("10.0.0.1", 30), g.admit("10.0.0.1", 31)
    assert isinstance(a1, Ticket) and isinstance(a2, Ticket)
    assert g.admit("10.0.0.1", 32) is Refusal.FROM_SOURCE
    b = g.admit("10.0.0.2", 32)
    assert isinstance(b, Ticket)
    assert g.admit("10.0.0.3", 33) is Refusal.TOO_MANY
    a1.release()
    a1.release()  # once only
    assert (g.open, fds.held) == (2, 2)
    assert isinstance(g.admit("10.0.0.1", 30), Ticket)
    assert refused(metrics, Refusal.FROM_SOURCE) == refused(metrics, Refusal.TOO_MANY) == 1
    gauge = metrics.registry.get_sample_value("idnode_connections_open", {"front": "http"})
    assert gauge == 3


def test_exempt_networks_have_no_per_source_cap() -> None:
    g, _ = gate(FdBudget(8, limit=1000, count=lambda: 20), per_source=1, exempt=("127.0.0.0/8",))
    assert all(isinstance(g.admit("127.0.0.1", 30 + i), Ticket) for i in range(5))


def test_the_budget_counts_between_listings_and_keeps_the_reserve() -> None:
    clock, table = SteppedClock(), Table(open_fds=50)
    fds = FdBudget(10, limit=100, count=table.count, monotonic=clock, recount_s=10)
    g, metrics = gate(fds, max_connections=1000, per_source=1000)
    tickets = []
    # 50 open, 10 kept free: room for 40, each accepted connection counted in between.
    for fd in range(50, 90):
        ticket = g.admit("10.0.0.1", fd)
        assert isinstance(ticket, Ticket), fd
        tickets.append(ticket)
    assert g.admit("10.0.0.1", 90) is Refusal.FD_RESERVE
    assert table.listings == 1  # listed once, not per connection
    for ticket in tickets[:5]:
        ticket.release()
    assert isinstance(g.admit("10.0.0.1", 50), Ticket)
    # Something else opened 20 descriptors: the next listing sees them.
    table.open_fds = 50 + 36 + 20
    clock.advance(10)
    assert g.admit("10.0.0.1", 51) is Refusal.FD_RESERVE
    assert table.listings == 2
    assert refused(metrics, Refusal.FD_RESERVE) == 2


def test_a_high_descriptor_number_is_a_lower_bound() -> None:
    # The kernel hands out the lowest free number: fd 95 means 95 below it are open.
    fds = FdBudget(10, limit=100, count=lambda: 5)
    g, _ = gate(fds)
    assert g.admit("10.0.0.1", 95) is Refusal.FD_RESERVE


def test_log_every_summarises_what_it_left_out(caplog: pytest.LogCaptureFixture) -> None:
    clock = SteppedClock()
    note = LogEvery(logging.getLogger("idnode.test"), interval_s=10, monotonic=clock)
    with caplog.at_level(logging.WARNING):
        for _ in range(100):
            note("refused %s", "x")
            clock.advance(0.15)  # 15 s in all
    assert [r.getMessage() for r in caplog.records] == [
        "refused x",
        "refused x (and 66 more like it since the last such line)",
    ]
