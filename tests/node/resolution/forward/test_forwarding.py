"""Forwarding through the tree (README "Forwarding"), on the three-node topology of
tests/node/topology_support.py: a partner asks the elevator node about a textile
identifier and gets it, signed and verified, from cache the second time; a change on the
textile node shows once the record's TTL has run out; the top alone leads a client to
either secondary; many concurrent asks make one exchange."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from node.app import Node
from node.client.native import NativeClient
from node.client.tree import TreeResolver
from node.client.upstream import Address
from node.demo.dataset import SILK_MILL
from protocol.bodies import ResolutionReply
from protocol.codes import ResponseCode
from tests.node.http_support import Api, admin_of
from tests.node.topology_support import ELEVATOR, TEXTILE, TOP, Topology, topology

ROLL = "88.118.2/ROLL-0001"
LIFT_HANDLE_PREFIX = "88.119.2/"


@pytest.fixture
async def tree(pg_server: str, tmp_path: Path) -> AsyncIterator[Topology]:
    async with topology(pg_server, tmp_path) as t:
        await t.docked(TEXTILE, {"88.118", "88.118.2"})
        await t.docked(ELEVATOR, {"88.119", "88.119.2"})
        yield t


def native(node: Node) -> NativeClient:
    assert node.handle_port
    return NativeClient("127.0.0.1", node.handle_port)


def asked(node: Node) -> float:
    """Resolution requests the node received, any transport, any response code."""
    total = 0.0
    for metric in node.metrics.registry.collect():
        for sample in metric.samples:
            if sample.name == "idnode_requests_total" and sample.labels["op"] == "resolution":
                total += sample.value
    return total


def forwarded(node: Node, front: str, result: str) -> float:
    labels = {"front": front, "result": result}
    return node.metrics.registry.get_sample_value("idnode_forwarded_requests_total", labels) or 0


async def put_roll(node: Node, url: str) -> None:
    async with aiohttp.ClientSession() as http:
        api = Api(http, f"http://127.0.0.1:{node.http_port}")
        r = await api.put(
            f"/api/handles/{ROLL}",
            [{"index": 1, "type": "URL", "data": url, "ttl": 300}],
            headers=admin_of(SILK_MILL),
        )
        assert r.status in (200, 201), r.text


def url_of(reply_values: object) -> str:
    assert isinstance(reply_values, ResolutionReply), reply_values
    return next(v.data.decode() for v in reply_values.values if v.type == "URL")


async def test_a_partner_resolves_a_textile_identifier_at_the_elevator_node(
    tree: Topology,
) -> None:
    textile, elevator = tree[TEXTILE], tree[ELEVATOR]
    await put_roll(textile, "https://mes.example.com/roll/1")  # the MES registers it
    first = await native(elevator).resolve(ROLL)
    assert first.header.response_code == ResponseCode.SUCCESS
    assert url_of(first.body) == "https://mes.example.com/roll/1"
    assert isinstance(first.body, ResolutionReply)
    assert "HS_SIGNATURE" in {v.type for v in first.body.values}
    # Over HTTP too, saying the signature verified (the bundle of both roots).
    async with aiohttp.ClientSession() as http:
        api = Api(http, f"http://127.0.0.1:{elevator.http_port}")
        r = await api.get(f"/api/handles/{ROLL}")
        assert r.status == 200 and r.headers["X-Idnode-Signature"] == "valid"
        page = await http.get(f"http://127.0.0.1:{elevator.http_port}/{ROLL}?noredirect")
        assert "Resolved through the tree" in await page.text()
    # Asked again: from the elevator's cache, the textile node is not asked.
    before = asked(textile)
    assert elevator.handler is not None
    hits = sum(elevator.handler.front_stats["udp"].hits.values())
    again = await native(elevator).resolve(ROLL)
    assert url_of(again.body) == "https://mes.example.com/roll/1"
    assert asked(textile) == before
    assert sum(elevator.handler.front_stats["udp"].hits.values()) == hits + 1  # the hot path
    assert forwarded(elevator, "udp", "answered") == 1
    # Changed on the textile node: the elevator serves the old record until its TTL
    # (300 s on the value) has run out on the elevator's clock, then the new one.
    await put_roll(textile, "https://mes.example.com/roll/1-v2")
    assert url_of((await native(elevator).resolve(ROLL)).body).endswith("/roll/1")
    tree.member(ELEVATOR).monotonic.advance(301)
    assert url_of((await native(elevator).resolve(ROLL)).body).endswith("/roll/1-v2")


async def test_the_top_alone_leads_to_either_secondary(tree: Topology) -> None:
    top = tree[TOP]
    assert top.handle_port
    client = TreeResolver([Address("127.0.0.1", top.handle_port)])
    textile_answer = await client.resolve("88.118.2/ROLL-2026-000123")
    assert textile_answer.response_code == ResponseCode.SUCCESS
    assert textile_answer.server.port == tree[TEXTILE].handle_port
    lift = next(
        h for h in await _handles(tree[ELEVATOR], "88.119.2") if h.startswith(LIFT_HANDLE_PREFIX)
    )
    lift_answer = await client.resolve(lift)
    assert lift_answer.response_code == ResponseCode.SUCCESS
    assert lift_answer.server.port == tree[ELEVATOR].handle_port
    missing = await client.resolve("88.777/NOWHERE")
    assert missing.response_code == ResponseCode.HANDLE_NOT_FOUND


async def _handles(node: Node, prefix: str) -> list[str]:
    assert node.db is not None
    _, handles = await node.db.registry.list_handles(prefix, 0, 50)
    return handles


async def test_a_thousand_concurrent_asks_make_one_exchange(tree: Topology) -> None:
    textile, elevator = tree[TEXTILE], tree[ELEVATOR]
    assert elevator.resolver is not None
    before = asked(textile)
    handle = "88.118.2/ROLL-2026-000124"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        url = f"http://127.0.0.1:{elevator.http_port}/api/handles/{handle}"

        async def ask() -> int:
            async with http.get(url) as r:
                await r.read()
                return r.status

        statuses = await asyncio.gather(*(ask() for _ in range(1000)))
    assert statuses == [200] * 1000
    # One exchange: one request, and its retry over TCP when the signed reply is over the
    # UDP cap (README "Forwarding").
    assert asked(textile) - before in (1, 2)
