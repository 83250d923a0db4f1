"""A real node's ``/metrics`` as Prometheus scrapes it: clean by ``promtool check metrics``
(Prometheus' own linter), and holding the process, pool, query and registry figures the
dashboard and the alerts use."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from node.app import Node
from node.runtime.gauges import PeriodicGauges
from registry.instrument import UNNAMED
from registry.queries import queries
from tests.node.http_support import A_HANDLE
from tests.node.native_support import request_bytes, udp_exchange
from tests.node.runtime.observed_support import observed_node, run_promtool, scrape


@pytest.fixture
async def busy_node(database_url: str, tmp_path: Path) -> AsyncIterator[Node]:
    async with observed_node(database_url, tmp_path / "node") as (node, _):
        yield node


async def traffic(node: Node) -> None:
    """Some of everything: HTTP resolutions (a miss, then hits), a native one, an error."""
    async with aiohttp.ClientSession() as session:
        for path in (f"/api/handles/{A_HANDLE}", f"/api/handles/{A_HANDLE}", "/api/nowhere"):
            async with session.get(f"http://127.0.0.1:{node.http_port}{path}") as reply:
                await reply.read()
    await udp_exchange(node, request_bytes(A_HANDLE))


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [
        (s.labels, s.value)
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == name
    ]


async def test_promtool_finds_nothing_to_fix(busy_node: Node) -> None:
    await traffic(busy_node)
    text = await scrape(busy_node)
    assert "idnode_requests_total" in text and "idnode_prefix_identifiers" in text
    assert run_promtool("check", "metrics", stdin=text) == ""


async def test_the_linter_is_live() -> None:
    """promtool does reject what it should: a counter without _total, a bad name."""
    bad = "# HELP idnode_x Things\n# TYPE idnode_x counter\nidnode_x 1\n"
    with pytest.raises(AssertionError, match="_total"):
        run_promtool("check", "metrics", stdin=bad)


async def test_process_metrics_carry_the_worker(busy_node: Node) -> None:
    busy_node.metrics.worker = "3"  # what node.serving sets in worker 3
    text = await scrape(busy_node)
    for name in ("process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds"):
        found = samples(text, name)
        assert [labels for labels, _ in found] == [{"worker": "3"}], name
    assert samples(text, "process_resident_memory_bytes")[0][1] > 10_000_000


async def test_pool_and_named_query_figures(busy_node: Node) -> None:
    await traffic(busy_node)
    text = await scrape(busy_node)
    connections = {
        labels["state"]: v for labels, v in samples(text, "idnode_registry_pool_connections")
    }
    assert set(connections) == {"in_use", "idle"} and connections["idle"] >= 1
    assert samples(text, "idnode_registry_pool_max_connections") == [
        ({}, busy_node.settings.db_pool_max)
    ]
    assert samples(text, "idnode_registry_pool_waiting") == [({}, 0.0)]
    assert samples(text, "idnode_registry_pool_acquire_seconds_count")[0][1] > 0
    by_query = {
        labels["query"]: v for labels, v in samples(text, "idnode_registry_query_seconds_count")
    }
    # The cache miss read the record by name; the demo seeding wrote by name.
    assert by_query.get("get_handle_raw", 0) + by_query.get("get_handles_raw", 0) >= 1
    assert len(by_query) >= 5
    assert set(by_query) <= {*queries(), UNNAMED}
    infinite = {
        labels["query"]: v
        for labels, v in samples(text, "idnode_registry_query_seconds_bucket")
        if labels["le"] == "+Inf"
    }
    assert infinite == by_query


async def test_gauges_are_read_not_measured_at_scrape(busy_node: Node) -> None:
    """A scrape runs no registry query: the pool's query counts do not move."""
    text = await scrape(busy_node)
    before = sum(v for _, v in samples(text, "idnode_registry_query_seconds_count"))
    for _ in range(3):
        text = await scrape(busy_node)
    after = sum(v for _, v in samples(text, "idnode_registry_query_seconds_count"))
    assert after == before


async def test_a_refresh_runs_the_stats_queries(busy_node: Node) -> None:
    def stats_queries(text: str) -> float:
        return sum(
            v
            for labels, v in samples(text, "idnode_registry_query_seconds_count")
            if labels["query"].startswith("stats_")
        )

    before = stats_queries(await scrape(busy_node))
    assert before >= 4  # the first refresh at start: one query each
    assert busy_node.db is not None
    gauges = PeriodicGauges(busy_node.metrics.gauges, busy_node.db.registry, clock=busy_node.clock)
    await gauges.refresh()
    assert stats_queries(await scrape(busy_node)) == before + 4
