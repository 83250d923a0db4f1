"""The health and metrics port is not exposed with the API: it listens on admin_bind
(loopback by default) whatever bind says, and with metrics_token_file set /metrics asks
for that bearer token while /healthz and /readyz stay open to probes."""

from __future__ import annotations

import logging
from pathlib import Path

import aiohttp
import pytest

from node.errors import NodeError
from tests.node.conftest import StartNode
from tests.node.fronts.connections_support import connect

TOKEN = "scrape-7f3a9c1e2b"


async def get(
    host: str, port: int | None, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://{host}:{port}{path}", headers=headers) as reply,
    ):
        return reply.status, dict(reply.headers), await reply.text()


async def test_the_admin_port_listens_on_admin_bind_not_bind(start_node: StartNode) -> None:
    node = await start_node("127.0.0.2")  # the API on 127.0.0.2; admin_bind left at loopback
    assert (await get("127.0.0.2", node.http_port, "/api/prefixes"))[0] == 200
    status, _, body = await get("127.0.0.1", node.admin_port, "/metrics")
    assert status == 200 and "idnode_ready 1.0" in body
    assert node.admin_port is not None
    with pytest.raises(ConnectionRefusedError):
        await connect(node.admin_port, host="127.0.0.2")


async def test_metrics_ask_for_the_token_probes_do_not(
    start_node: StartNode, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token_file = tmp_path / "metrics.token"
    token_file.write_text(TOKEN + "\n")
    node = await start_node(metrics_token_file=str(token_file))
    admin = node.admin_port
    status, headers, _ = await get("127.0.0.1", admin, "/metrics")
    assert status == 401 and headers["WWW-Authenticate"] == 'Bearer realm="metrics"'
    wrong = {"Authorization": "Bearer " + TOKEN[:-1] + "X"}
    assert (await get("127.0.0.1", admin, "/metrics", wrong))[0] == 401
    basic = {"Authorization": "Basic " + TOKEN}
    assert (await get("127.0.0.1", admin, "/metrics", basic))[0] == 401
    right = {"Authorization": "Bearer " + TOKEN}
    status, _, body = await get("127.0.0.1", admin, "/metrics", right)
    assert status == 200 and "idnode_ready 1.0" in body
    assert (await get("127.0.0.1", admin, "/healthz"))[0] == 200
    assert (await get("127.0.0.1", admin, "/readyz"))[0] == 200
    assert TOKEN not in caplog.text


@pytest.mark.parametrize("content", [None, "  \n"])
async def test_a_missing_or_empty_token_file_stops_the_start(
    start_node: StartNode, tmp_path: Path, content: str | None
) -> None:
    token_file = tmp_path / "metrics.token"
    if content is not None:
        token_file.write_text(content)
    with pytest.raises(NodeError, match="metrics_token_file"):
        await start_node(metrics_token_file=str(token_file))
