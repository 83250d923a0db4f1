"""Finding the top-level node (``upstream``): DNS SRV records served by a real DNS server
on loopback (dnspython's wire format, answered over UDP), their RFC 2782 order, failover
past a dead address, and the circuit breakers on a clock the test moves."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest

from node.client.native import NativeClient
from node.client.upstream import Address, Breaker, Breakers, Upstreams
from protocol.codes import ResponseCode
from tests.node.http_support import SteppedClock
from tests.node.topology_support import ELEVATOR, TEXTILE, topology


class SrvServer(asyncio.DatagramProtocol):
    """Answers SRV questions from ``records``: name -> [(priority, weight, port, target)]."""

    def __init__(self, records: dict[str, list[tuple[int, int, int, str]]]):
        self.records = records
        self.asked: list[str] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query = dns.message.from_wire(data)
        reply = dns.message.make_response(query)
        name = query.question[0].name.to_text()
        self.asked.append(name)
        rows = self.records.get(name, [])
        if rows:
            texts = [f"{p} {w} {port} {target}" for p, w, port, target in rows]
            reply.answer.append(
                dns.rrset.from_text_list(name, 60, dns.rdataclass.IN, dns.rdatatype.SRV, texts)
            )
        else:
            reply.set_rcode(dns.rcode.NXDOMAIN)
        assert self.transport is not None
        self.transport.sendto(reply.to_wire(), addr)


@pytest.fixture
async def srv() -> AsyncIterator[tuple[SrvServer, str]]:
    server = SrvServer({})
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: server, local_addr=("127.0.0.1", 0)
    )
    try:
        yield server, f"127.0.0.1:{transport.get_extra_info('sockname')[1]}"
    finally:
        transport.close()


def dead_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_srv_records_in_priority_order(srv: tuple[SrvServer, str]) -> None:
    server, dns_at = srv
    server.records["_handle._tcp.tree.test."] = [
        (20, 0, 2642, "backup.tree.test."),
        (10, 5, 2641, "top-a.tree.test."),
        (10, 5, 2641, "top-b.tree.test."),
    ]
    server.records["_handle._udp.tree.test."] = [(10, 5, 2641, "top-a.tree.test.")]
    clock = SteppedClock()
    upstreams = Upstreams(("srv:tree.test",), dns_server=dns_at, monotonic=clock)
    order = await upstreams.order()
    assert {a.host for a in order[:2]} == {"top-a.tree.test", "top-b.tree.test"}
    assert order[2] == Address("backup.tree.test", 2642)
    asked = len(server.asked)
    assert await upstreams.order() == order and len(server.asked) == asked  # within the TTL
    clock.advance(61)
    await upstreams.order()
    assert len(server.asked) > asked  # looked up again once the TTL ran out


async def test_dns_failing_keeps_what_was_known(srv: tuple[SrvServer, str]) -> None:
    server, dns_at = srv
    server.records["_handle._tcp.tree.test."] = [(10, 0, 2641, "top.tree.test.")]
    clock = SteppedClock()
    upstreams = Upstreams(("srv:tree.test",), dns_server=dns_at, monotonic=clock)
    known = await upstreams.order()
    server.records.clear()  # NXDOMAIN from now on
    clock.advance(3600)
    assert await upstreams.order() == known


def test_breakers_open_half_open_and_close() -> None:
    clock = SteppedClock()
    breakers = Breakers(3, 30.0, clock)
    a = Address("192.0.2.1", 2641)
    for _ in range(3):
        assert breakers.allows(a)
        breakers.failed(a)
    assert not breakers.allows(a) and breakers.open_count() == 1
    clock.advance(30)
    assert breakers.allows(a)  # half open: one probe
    assert not breakers.allows(a)  # ...only one
    breakers.failed(a)
    assert not breakers.allows(a)  # open again
    clock.advance(30)
    assert breakers.allows(a)
    breakers.succeeded(a)
    assert breakers.allows(a) and breakers.open_count() == 0
    assert Breaker(1, 1.0).allows(0.0)


async def test_a_secondary_finds_its_top_through_srv_and_fails_over(
    pg_server: str, tmp_path: Path, srv: tuple[SrvServer, str]
) -> None:
    """The elevator knows only ``srv:tree.test``: the first record names a dead port,
    the second the top. It docks and forwards all the same."""
    server, dns_at = srv
    dead = dead_port()

    def elevator(url: str) -> dict[str, object]:
        return {"upstream": "srv:tree.test", "upstream_dns_server": dns_at}

    async with topology(
        pg_server, tmp_path, elevator=elevator, before_start=_records(server, dead)
    ) as tree:
        await tree.docked(ELEVATOR, {"88.119", "88.119.2"})
        await tree.docked(TEXTILE, {"88.118", "88.118.2"})
        port = tree[ELEVATOR].handle_port
        assert port
        reply = await NativeClient("127.0.0.1", port).resolve("88.118.2/ROLL-2026-000123")
        assert reply.header.response_code == ResponseCode.SUCCESS
    assert "_handle._tcp.tree.test." in server.asked


def _records(server: SrvServer, dead: int) -> Callable[[int], None]:
    def fill(top_port: int) -> None:
        rows = [(10, 0, dead, "127.0.0.1."), (20, 0, top_port, "127.0.0.1.")]
        server.records["_handle._tcp.tree.test."] = rows
        server.records["_handle._udp.tree.test."] = rows

    return fill
