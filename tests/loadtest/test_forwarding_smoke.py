"""The forwarding benchmark's own pieces, cheaply (the benchmark itself:
loadtest/forwarding.py): its metrics arithmetic, table, request file and docking-status
reading on fixed inputs; then, on the three-node tree of tests/node/topology_support.py
(in this process), its record creation, sequential asks, the burst and the /metrics
scrapes, each at a tiny scale, checked against what the nodes counted."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from loadtest.benchtable import Row
from loadtest.forwarding import (
    COLD,
    DIRECT,
    EXCHANGES,
    FLIGHT,
    HOT,
    LIFTS,
    SILK,
    Records,
    ask_each,
    burst,
    by_label,
    create_records,
    delta,
    docking_states,
    format_table,
    parse_samples,
    resolved_ok,
    scrape,
    with_database,
    write_requests,
)
from loadtest.rolls import MAX_FIELDS
from protocol.message import REQUEST_ID_OFFSET, decode
from tests.node.topology_support import ELEVATOR, TEXTILE, TOP, Topology, topology

METRICS_BEFORE = """\
# TYPE idnode_requests counter
idnode_requests_total{front="udp",op="resolution",rc="1"} 5.0
idnode_requests_total{front="tcp",op="resolution",rc="1"} 2.0
idnode_requests_total{front="udp",op="resolution",rc="100"} 1.0
# TYPE idnode_upstream_exchange_seconds histogram
idnode_upstream_exchange_seconds_bucket{le="0.001",result="answered"} 1.0
idnode_upstream_exchange_seconds_bucket{le="+Inf",result="answered"} 3.0
idnode_upstream_exchange_seconds_count{result="answered"} 3.0
idnode_upstream_exchange_seconds_sum{result="answered"} 0.01
"""
METRICS_AFTER = """\
# TYPE idnode_requests counter
idnode_requests_total{front="udp",op="resolution",rc="1"} 9.0
idnode_requests_total{front="tcp",op="resolution",rc="1"} 3.0
idnode_requests_total{front="udp",op="resolution",rc="100"} 4.0
idnode_requests_total{front="udp",op="get_site_info",rc="1"} 1.0
# TYPE idnode_upstream_exchange_seconds histogram
idnode_upstream_exchange_seconds_bucket{le="0.001",result="answered"} 1.0
idnode_upstream_exchange_seconds_bucket{le="+Inf",result="answered"} 4.0
idnode_upstream_exchange_seconds_count{result="answered"} 4.0
idnode_upstream_exchange_seconds_sum{result="answered"} 0.02
idnode_upstream_exchange_seconds_bucket{le="+Inf",result="error"} 2.0
idnode_upstream_exchange_seconds_count{result="error"} 2.0
"""


def test_metrics_arithmetic() -> None:
    before, after = parse_samples(METRICS_BEFORE), parse_samples(METRICS_AFTER)
    assert resolved_ok(before, after) == 5  # udp 4 + tcp 1; RC 100 and site info not
    assert delta(before, after, EXCHANGES) == 3  # answered 1 + error 2 (new label)
    assert by_label(before, after, EXCHANGES, "result") == {"answered": 1, "error": 2}
    assert by_label(before, after, "idnode_requests_total", "rc", op="resolution") == {
        "1": 5,
        "100": 3,
    }
    assert delta(after, after, EXCHANGES) == 0


def test_table_rows_and_ratios() -> None:
    lines = format_table(
        [
            Row("1 cold fwd", "elevator: new rolls", None, 4.0, 9.5, 3.2, "direct", detail="x"),
            Row("1 cold fwd", "second", None, 1.0, 2.0, None, "direct"),
            Row("5 single fl.", "1000 at once", None, 50.0, 80.0, 1000.0, "x", detail="d"),
        ]
    )
    assert lines[0].split()[:2] == ["row", "target"]
    assert "1 cold fwd" in lines[2] and "3.20 direct x" in lines[2]
    assert not lines[3].startswith("1 cold fwd")  # a group's name once
    assert " - direct" in lines[3]  # no ratio: a dash
    assert "1000 x      d" in lines[4]  # a factor: no decimals


def test_request_file_names_the_handles_in_turn(tmp_path: Path) -> None:
    handles = [SILK.handle(HOT + i) for i in range(3)]
    path = tmp_path / "requests.hex"
    write_requests(path, handles)
    lines = path.read_text().splitlines()
    assert len(lines) == 4096
    named = [decode(bytes.fromhex(line)).body.handle for line in lines[:4]]  # type: ignore[union-attr]
    assert named == [*handles, handles[0]]
    assert bytes.fromhex(lines[0])[REQUEST_ID_OFFSET : REQUEST_ID_OFFSET + 4] == b"\0\0\0\1"


def test_handles_and_records_of_both_sides_have_the_same_shape() -> None:
    assert SILK.handle(COLD) == "88.118.2/ROLL-2026-100000"
    assert len(SILK.handle(FLIGHT)) == len(LIFTS.handle(FLIGHT))
    records = Records(8, now_s=1_700_000_000)
    silk, lift = json.loads(records.body(SILK, 5)), json.loads(records.body(LIFTS, 5))
    assert [v["index"] for v in silk] == [v["index"] for v in lift]
    # URL, HS_ADMIN and 8 fields: too few for the roll template, so it is not cited.
    assert len(silk) == 10 and 1001 not in [v["index"] for v in silk]
    assert silk[0]["data"]["value"].endswith(SILK.handle(5))
    full = json.loads(Records(MAX_FIELDS, now_s=1_700_000_000).body(SILK, 5))
    assert len(full) == 3 + MAX_FIELDS and 1001 in [v["index"] for v in full]
    assert silk[1]["data"]["value"]["handle"] == "88.118.2/ADMIN"
    assert lift[1]["data"]["value"]["handle"] == "88.119.2/ADMIN"


def test_docking_status_and_database_urls() -> None:
    status = json.dumps(
        {
            "upstream": ["127.0.0.1:1"],
            "outbox depth": 1,
            "prefixes": [
                {"prefix": "88.118", "state": "docked"},
                {"prefix": "88.118.6", "state": "pending"},
            ],
        }
    )
    assert docking_states(status) == {"88.118": "docked", "88.118.6": "pending"}
    assert (
        with_database("postgresql://u:p@db.example.com:5433/postgres?sslmode=require", "x_top")
        == "postgresql://u:p@db.example.com:5433/x_top?sslmode=require"
    )


# -- on a real tree -------------------------------------------------------------------


@pytest.fixture
async def tree(pg_server: str, tmp_path: Path) -> AsyncIterator[Topology]:
    # Signed forwarded replies over UDP, as the benchmark sends them: above the default
    # udp_max_reply_bytes, which would send each over TCP after an RC 2 (that cap:
    # tests/node/fronts/native/test_udp_limits.py).
    uncapped = dict.fromkeys((TOP, TEXTILE, ELEVATOR), lambda url: {"udp_max_reply_bytes": 65_536})
    async with topology(pg_server, tmp_path, **uncapped) as t:
        await t.docked(TEXTILE, {"88.118", "88.118.2"})
        await t.docked(ELEVATOR, {"88.119", "88.119.2"})
        yield t


async def metrics(tree: Topology, name: str) -> dict:  # type: ignore[type-arg]
    port = tree[name].admin_port
    assert port
    return await asyncio.to_thread(scrape, port)  # the node answers on this very loop


async def test_the_benchmark_pieces_on_a_three_node_tree(tree: Topology) -> None:
    textile, elevator = tree[TEXTILE], tree[ELEVATOR]
    assert textile.http_port and textile.handle_port and elevator.handle_port
    assert elevator.http_port
    records = Records(4)
    rolls = [COLD, COLD + 1, COLD + 2, DIRECT, FLIGHT]
    assert await create_records(textile.http_port, SILK, rolls, records) == len(rolls)
    assert await create_records(elevator.http_port, LIFTS, [HOT], records) == 1

    direct = await ask_each(textile.handle_port, [SILK.handle(DIRECT)])
    assert not direct.problems and len(direct.ms) == 1
    assert direct.values == 2 + 4 + 1  # written (no TEMPLATE: 4 fields) + HS_SIGNATURE
    assert direct.datagrams >= 2 and direct.reply_bytes > 512

    # Cold forwarded asks: the first through the top (the roll's prefix record for its
    # sites, the signer's for its certificates), the rest straight to the textile node.
    t0, e0, x0 = [await metrics(tree, n) for n in (TOP, ELEVATOR, TEXTILE)]
    first = await ask_each(elevator.handle_port, [SILK.handle(COLD)], direct.values)
    t1, e1 = await metrics(tree, TOP), await metrics(tree, ELEVATOR)
    rest = await ask_each(
        elevator.handle_port, [SILK.handle(COLD + 1), SILK.handle(COLD + 2)], direct.values
    )
    t2, e2, x2 = [await metrics(tree, n) for n in (TOP, ELEVATOR, TEXTILE)]
    assert not first.problems and not rest.problems and len(rest.ms) == 2
    assert (resolved_ok(t0, t1), delta(e0, e1, EXCHANGES)) == (2, 3)
    assert elevator.cache is not None
    assert {"0.NA/88.118", "0.NA/88.118.2"} <= set(elevator.cache.entries)
    assert (resolved_ok(t1, t2), delta(e1, e2, EXCHANGES)) == (0, 2)
    assert resolved_ok(x0, x2) == 3
    verdicts = by_label(e0, e2, "idnode_forwarded_signatures_total", "verdict")
    assert verdicts == {"valid": 3}
    # A local record of the same shape, at the same size.
    local = await ask_each(elevator.handle_port, [LIFTS.handle(HOT)], direct.values)
    assert not local.problems and local.datagrams == direct.datagrams

    # The burst: every request answered, one exchange upstream, others joined the flight.
    x3, e3 = await metrics(tree, TEXTILE), await metrics(tree, ELEVATOR)
    result = await burst(elevator.handle_port, SILK.handle(FLIGHT), 60)
    x4, e4 = await metrics(tree, TEXTILE), await metrics(tree, ELEVATOR)
    assert result.rcs == {1: 60} and not result.problems and len(result.ms) == 60
    assert resolved_ok(x3, x4) == 1
    assert delta(e3, e4, EXCHANGES) == 1
    assert delta(e3, e4, "idnode_cache_single_flight_joins_total") >= 1

    # A roll nobody created: RC 100 comes back, and ask_each says so.
    missing = await ask_each(elevator.handle_port, [SILK.handle(FLIGHT + 1)])
    assert missing.ms == [] and "RC 100" in missing.problems[0]
