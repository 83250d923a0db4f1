"""``idnode enterprise`` as an operator runs it: a real subprocess against the database of
a running node (the demo data, ``88.118`` the node's own prefix), sharing its key
directory as a deployment's CLI does. The secret ``onboard`` prints once authenticates a
write over HTTP to that node, which serves the prefix without a restart."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from node.app import Node
from protocol.creditcode import check_character
from tests.node.http_support import Api, StartNode, basic, url_value
from tests.node.process_support import run_idnode

CODE = "91320509MA7WQ1X20" + check_character("91320509MA7WQ1X20")
NAME = "吴江示例纺织有限公司"


@pytest.fixture
async def node(start_http_node: StartNode) -> Node:
    return await start_http_node()


@pytest.fixture
def env(node: Node, database_url: str, tmp_path: Path) -> dict[str, str]:
    # The node's own data dir (start_http_node's): its secrets key seals what the CLI writes.
    return {"IDNODE_DATABASE_URL": database_url, "IDNODE_DATA_DIR": str(tmp_path / "node")}


async def idnode(*args: str, env: dict[str, str]) -> Any:
    """Run the command off the loop (the node keeps serving meanwhile); its JSON output."""
    result = await asyncio.to_thread(run_idnode, *args, env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


async def refused(*args: str, env: dict[str, str]) -> str:
    result = await asyncio.to_thread(run_idnode, *args, env=env)
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("idnode: error: "), result.stderr
    return lines[0]


async def served(node: Node, prefix: str) -> None:
    assert node.resolver is not None
    prefixes = node.resolver.served
    await asyncio.wait_for(prefixes.wait_until(lambda: prefixes.serves(prefix)), 10)


async def test_onboard_prints_a_secret_that_works_once(node: Node, env: dict[str, str]) -> None:
    onboard = (
        "enterprise",
        "onboard",
        "--name",
        NAME,
        "--credit-code",
        CODE,
        "--prefix",
        "88.118.7",
        "--contact",
        "ops@example.com",
        "--reason",
        "contract 2026-17",
    )
    out = await idnode(*onboard, env=env)
    assert (out["prefix"], out["status"], out["credit_code"]) == ("88.118.7", 1, CODE)
    assert out["admin"] == "300:88.118.7/ADMIN"
    secret = out["secret"]
    assert isinstance(secret, str) and len(secret) >= 32

    await served(node, "88.118.7")
    async with aiohttp.ClientSession() as session:
        api = Api(session, f"http://127.0.0.1:{node.http_port}")
        r = await api.put(
            "/api/handles/88.118.7/ROLL-1",
            [url_value(1, "https://example.com/r/1")],
            headers=basic("300:88.118.7/ADMIN", secret),
        )
        assert r.status == 200, r.text
        r = await api.put(
            "/api/handles/88.118.7/ROLL-2",
            [url_value(1, "x")],
            headers=basic("300:88.118.7/ADMIN", secret + "x"),
        )
        assert r.status == 401

    history = await idnode("enterprise", "history", "88.118.7", env=env)
    assert [(h["action"], h["from_status"], h["to_status"]) for h in history] == [
        ("apply", None, 4),
        ("review", 4, 5),
        ("review", 5, 1),
    ]
    assert all(h["actor"].startswith("cli:") for h in history)
    assert {h["reason"] for h in history} == {"contract 2026-17"}

    # Run again: nothing is missing, so nothing is done and no secret is shown.
    again = await idnode(*onboard, env=env)
    assert again["secret"] is None and again["status"] == 1
    assert len(await idnode("enterprise", "history", "88.118.7", env=env)) == 3
    listed = {e["credit_code"]: e for e in await idnode("enterprise", "list", env=env)}
    assert [(p["prefix"], p["status_name"]) for p in listed[CODE]["prefixes"]] == [
        ("88.118.7", "enabled")
    ]


async def test_apply_review_and_operator_steps(node: Node, env: dict[str, str]) -> None:
    result = await asyncio.to_thread(
        run_idnode, "enterprise", "add", "--name", NAME, "--credit-code", CODE, env=env
    )
    assert result.returncode == 0, result.stderr
    out = await idnode("enterprise", "apply", "88.118.8", "--credit-code", CODE, env=env)
    assert (out["status"], out["review"]["action"]) == (4, "apply")
    message = await refused("enterprise", "review", "88.118.8", "--to", "1", env=env)
    assert "awaiting review (status 4)" in message and "enabled (status 1)" in message
    message = await refused("enterprise", "review", "88.118.8", "--to", "rejected", env=env)
    assert "reason" in message
    out = await idnode(
        "enterprise", "review", "88.118.8", "--to", "rejected", "--reason", "no licence", env=env
    )
    assert out["status"] == 3 and "secret" not in out
    message = await refused("enterprise", "apply", "99.1.2", "--credit-code", CODE, env=env)
    assert "not under a prefix of this node" in message and "88.118" in message

    # An operator's own commands leave their steps in the trail too.
    result = await asyncio.to_thread(
        run_idnode, "prefix", "add", "88.118.9", "--enterprise", CODE, "--status", "4", env=env
    )
    assert result.returncode == 0, result.stderr
    result = await asyncio.to_thread(
        run_idnode, "prefix", "set-status", "88.118.9", "0", "--reason", "paused", env=env
    )
    assert result.returncode == 0, result.stderr
    history = await idnode("enterprise", "history", "88.118.9", env=env)
    assert [(h["action"], h["from_status"], h["to_status"], h["reason"]) for h in history] == [
        ("operator", None, 4, ""),
        ("operator", 4, 0, "paused"),
    ]
