"""The access log (node.runtime.accesslog): one JSON object per request on idnode.access,
from the HTTP front's middleware and the native handler's entry point, as the settings
ask (off, sampled, all)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from node.app import Node
from node.runtime.accesslog import HANDLE_MAX_CHARS, AccessLog, reply_code, request_handle
from node.settings import SettingsError, load_settings
from protocol.bodies import ErrorReply, ResolutionRequest
from protocol.codes import OpCode
from protocol.message import Envelope, EnvelopeFlag, Header, Message, decode, encode
from tests.node.conftest import tcp_exchange
from tests.node.http_support import A_HANDLE
from tests.node.native_support import request_bytes, udp_exchange
from tests.node.runtime.observed_support import observed_node

ACCESS = "idnode.access"


def lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [orjson.loads(r.getMessage()) for r in caplog.records if r.name == ACCESS]


class Draws:
    """Stands in for random.random: the draws the test chose."""

    def __init__(self, *values: float):
        self.values = list(values)

    def __call__(self) -> float:
        return self.values.pop(0)


def test_off_all_and_sampled() -> None:
    assert not AccessLog().wanted()
    assert AccessLog("all").wanted()
    sampled = AccessLog("sampled", 0.25, random_unit=Draws(0.1, 0.25, 0.9))
    assert [sampled.wanted() for _ in range(3)] == [True, False, False]


def test_a_line_is_one_json_object(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS)
    log = AccessLog("all")
    log.write("udp", "resolution", "88.118.2/A1\n{x}", 1, 0.0004123, "203.0.113.7")
    log.write("tcp", "unknown", "X" * (HANDLE_MAX_CHARS + 100), None, 1.5, None)
    first, second = lines(caplog)
    assert first == {
        "front": "udp",
        "op": "resolution",
        "handle": "88.118.2/A1\n{x}",
        "rc": 1,
        "latency_ms": 0.412,
        "client": "203.0.113.7",
    }
    assert len(second["handle"]) == HANDLE_MAX_CHARS and second["rc"] is None
    assert all("\n" not in r.getMessage() for r in caplog.records)  # one line each


def test_turned_on_it_logs_whatever_log_level_says(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.idnode.access.level")
    logger.setLevel(logging.WARNING)
    caplog.set_level(logging.INFO)
    AccessLog("all", logger=logger).write("http", "resolution", None, 1, 0.001, None)
    assert [r.name for r in caplog.records] == [logger.name]


def test_bad_modes_and_rates_are_refused() -> None:
    with pytest.raises(ValueError, match="not one of off, sampled, all"):
        AccessLog("some")
    with pytest.raises(ValueError, match=r"not in \(0, 1\]"):
        AccessLog("sampled", 0)
    for rate in ("0", "1.5", "x"):
        with pytest.raises(SettingsError, match="access_log_sample_rate"):
            load_settings(env={}, flags={"access_log_sample_rate": rate})
    with pytest.raises(SettingsError, match="access_log"):
        load_settings(env={}, flags={"access_log": "everything"})
    s = load_settings(env={}, flags={"access_log": "sampled", "access_log_sample_rate": "0.5"})
    assert (s.access_log, s.access_log_sample_rate) == ("sampled", 0.5)
    assert load_settings(env={}, flags={}).access_log == "off"


def test_reply_code_and_request_handle_read_native_messages() -> None:
    request = Message(
        Envelope(request_id=7), Header(OpCode.RESOLUTION), ResolutionRequest(A_HANDLE)
    )
    assert request_handle(request) == A_HANDLE
    reply = encode(Message(Envelope(request_id=7), Header(OpCode.RESOLUTION, 100), ErrorReply()))
    assert reply_code(reply) == 100
    assert reply_code([reply, b"rest"]) == 100
    assert reply_code(None) is None and reply_code(b"short") is None
    encrypted = bytearray(reply)
    encrypted[2] |= EnvelopeFlag.ENCRYPTED
    assert reply_code(bytes(encrypted)) is None


async def get(node: Node, path: str) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{node.http_port}{path}", allow_redirects=False) as reply,
    ):
        await reply.read()
        return reply.status


async def test_http_and_native_requests_are_logged(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS)
    async with observed_node(database_url, tmp_path / "node", access_log="all") as (node, _):
        assert await get(node, f"/api/handles/{A_HANDLE}") == 200
        assert await get(node, "/api/handles/88.118.2/NO-SUCH-THING") == 404
        assert await get(node, "/api/nowhere") == 404
        assert await get(node, f"/{A_HANDLE}") == 302  # the record page: to the URL it holds
        # Over UDP the signed record is larger than udp_max_reply_bytes: RC 2 (use TCP).
        by_udp = await udp_exchange(node, request_bytes(A_HANDLE))
        assert node.handle_port is not None
        by_tcp = await tcp_exchange("127.0.0.1", node.handle_port, request_bytes("88.118.2/NOPE"))
        # Asked again over the other transport, each is answered from the reply cache
        # (the first ask kept its whole reply, for both), never decoded; the second UDP
        # ask from the datagrams kept ready. Logged all the same.
        for _ in range(2):
            await udp_exchange(node, request_bytes("88.118.2/NOPE"))
        await tcp_exchange("127.0.0.1", node.handle_port, request_bytes(A_HANDLE))
        await tcp_exchange("127.0.0.1", node.handle_port, request_bytes(A_HANDLE))
        assert node.handler is not None
        stats = node.handler.front_stats
        assert sum(stats["udp"].hits.values()) == 2 and sum(stats["tcp"].hits.values()) == 2
    got = lines(caplog)
    assert all(line["client"] == "127.0.0.1" and line["latency_ms"] >= 0 for line in got)
    assert [(x["front"], x["op"], x["handle"], x["rc"]) for x in got] == [
        ("http", "resolution", A_HANDLE, 1),
        ("http", "resolution", "88.118.2/NO-SUCH-THING", 100),
        ("http", "unknown", None, 4),  # no route: the API's error, RC 4
        ("http", "page", A_HANDLE, 302),
        ("udp", "resolution", A_HANDLE, by_udp.header.response_code),
        ("tcp", "resolution", "88.118.2/NOPE", decode(by_tcp).header.response_code),
        ("udp", "resolution", "88.118.2/NOPE", 100),
        ("udp", "resolution", "88.118.2/NOPE", 100),
        ("tcp", "resolution", A_HANDLE, 1),
        ("tcp", "resolution", A_HANDLE, 1),
    ]
    assert by_udp.header.response_code == 2


async def test_off_by_default(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS)
    async with observed_node(database_url, tmp_path / "node") as (node, _):
        assert await get(node, f"/api/handles/{A_HANDLE}") == 200
        await udp_exchange(node, request_bytes(A_HANDLE))
    assert lines(caplog) == []
