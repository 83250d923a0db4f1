"""Identities held elsewhere (docs/authentication.md, "Verification"): two real nodes,
each with its own database and keys. The identity 300:88.118.5/ADMIN lives on its home
node; the node under test serves 88.118 and delegates 88.118.5 to that home with an
HS_SITE.PREFIX value in 0.NA/88.118. An answer naming the identity is sent, certified
(opcode 201), to the home node, whose signed verdict decides."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from node.app import Node
from node.client.admin import AdminClient, AdminError, Credentials
from node.demo.seed import seed_records
from node.settings import load_settings
from protocol.codes import ResponseCode
from protocol.handle import parse_handle
from protocol.keys import encode_public_key
from protocol.structured import SiteInfo
from protocol.values import HandleValue
from tests.conftest import scratch_database
from tests.node.conftest import OWNER_CODE, SEED_TIME, StartNode

IDENTITY = "88.118.5/ADMIN"
HOME_SECRET = b"home-secret-5"
DELEGATION_INDEX = 50


@pytest.fixture
async def home(pg_server: str, tmp_path: Path) -> AsyncIterator[Node]:
    """The identity's home node: its own database and key directory, serving 88.118.5."""
    async with scratch_database(pg_server) as url:
        settings = load_settings(
            env={},
            flags={
                "database_url": url,
                "data_dir": str(tmp_path / "home"),
                "bind": "127.0.0.1",
                "handle_port": 0,
                "admin_port": 0,
                "http_port": 0,
                "prefixes": "88.118.5",
            },
        )
        node = Node(settings)
        await node.start()
        try:
            assert node.db is not None and node.resolver is not None
            registry = node.db.registry
            await registry.add_enterprise("吴江电梯", OWNER_CODE, "ops@example.com", SEED_TIME)
            await registry.add_prefix("88.118.5", OWNER_CODE, SEED_TIME)
            secret = {"format": "string", "value": HOME_SECRET.decode()}
            record = [{"index": 300, "type": "HS_SECKEY", "data": secret}]
            await seed_records(
                registry, [(IDENTITY, record)], actor="test", now=SEED_TIME, writes=node.writes
            )
            await node.resolver.refresh_prefixes()
            yield node
        finally:
            await node.stop()


async def delegate(node: Node, site: SiteInfo) -> None:
    """0.NA/88.118 on ``node`` gains an HS_SITE.PREFIX value naming ``site``."""
    assert node.db is not None
    value = HandleValue(DELEGATION_INDEX, "HS_SITE.PREFIX", site.to_wire())
    await node.db.registry.put_handle(
        parse_handle("0.NA/88.118"),
        [value],
        actor="test",
        now=SEED_TIME,
        only_indexes=frozenset({DELEGATION_INDEX}),
    )


@pytest.fixture
async def node(start_node: StartNode, home: Node) -> Node:
    """Serves 88.118, delegates 88.118.5 to ``home``; the remote identity is its server
    admin. (No record cache: the delegation is read as written.)"""
    started = await start_node(server_admins=f"300:{IDENTITY}", cache_enabled=False)
    assert home.site is not None
    await delegate(started, home.site.info)
    return started


def client(node: Node, secret: bytes) -> AdminClient:
    assert node.handle_port
    return AdminClient("127.0.0.1", node.handle_port, Credentials(IDENTITY, 300, secret=secret))


def verified(home: Node) -> float:
    labels = {"front": "tcp", "op": "verify_response", "rc": "1"}
    return home.metrics.registry.get_sample_value("idnode_requests_total", labels) or 0.0


def unverified(node: Node) -> float:
    labels = {"front": "native", "reason": "unverified"}
    return node.metrics.registry.get_sample_value("idnode_auth_failures_total", labels) or 0.0


async def test_the_home_server_vouches_for_its_identity(node: Node, home: Node) -> None:
    async with client(node, HOME_SECRET) as c:
        await c.home("88.118.77")
        assert "0.NA/88.118.77" in await c.list_homed()
    assert verified(home) >= 1
    # The identity is not copied here: the node still does not hold it.
    assert node.db is not None and await node.db.registry.get_handle("88.118.5/ADMIN") is None


async def test_a_wrong_secret_is_refused_by_the_home_server(node: Node, home: Node) -> None:
    async with client(node, b"not-the-secret") as c:
        with pytest.raises(AdminError) as err:
            await c.home("88.118.78")
    assert err.value.response_code == ResponseCode.AUTHENTICATION_FAILED
    assert verified(home) == 1  # asked, and it said no


async def test_a_verdict_not_signed_by_the_advertised_key_is_ignored(
    node: Node, home: Node
) -> None:
    """The delegation names the home's address but another key: its signed reply
    cannot be checked against it, so nothing is proven."""
    assert home.site is not None
    server = home.site.info.servers[0]
    forged = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged_key = encode_public_key(forged.public_key())
    site = dataclasses.replace(
        home.site.info, servers=(dataclasses.replace(server, public_key=forged_key),)
    )
    await delegate(node, site)
    async with client(node, HOME_SECRET) as c:
        with pytest.raises(AdminError) as err:
            await c.home("88.118.79")
    assert err.value.response_code == ResponseCode.AUTHENTICATION_FAILED
    assert unverified(node) == 1


async def test_an_unreachable_home_proves_nothing(node: Node, home: Node) -> None:
    await home.stop()
    async with client(node, HOME_SECRET) as c:
        with pytest.raises(AdminError) as err:
            await c.home("88.118.80")
    assert err.value.response_code == ResponseCode.AUTHENTICATION_FAILED
    assert unverified(node) == 1
