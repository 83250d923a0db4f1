"""Native administration against a real node (docs/authentication.md, "Admin
operations"): every opcode through the node's own admin client, each refusal with the
response code the reference answers, enterprises isolated as over HTTP, and a handle
created natively signed and visible over HTTP at once."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from prometheus_client import generate_latest

from node.app import Node
from node.client.admin import AdminClient, AdminError, Credentials
from node.client.native import ClientError, NativeClient
from node.demo.dataset import OPERATOR, SILK_MILL, YARN_MAKER
from node.secrets.vault import SHOWN
from protocol.admin import HandleRequest, ValuesRequest
from protocol.codes import ALL_ADMIN_PERMS, AdminPerm, OpCode, OpFlag, ResponseCode
from protocol.message import Envelope, Header, Message, decode, encode
from protocol.structured import (
    AdminRef,
    InterfaceProtocol,
    InterfaceType,
    Reference,
    encode_admin,
    encode_vlist,
)
from protocol.values import HandleValue
from tests.node.conftest import StartNode, tcp_exchange
from tests.node.http_support import Api, SteppedClock, all_record_bytes, basic

A = Credentials("88.118.2/ADMIN", 300, secret=SILK_MILL.admin_secret.encode())
B = Credentials("88.118.3/ADMIN", 300, secret=YARN_MAKER.admin_secret.encode())
OP = Credentials("88.118/ADMIN", 300, secret=OPERATOR.admin_secret.encode())
URL = HandleValue(1, "URL", b"https://example.com/native")
H = "88.118.2/NATIVE-1"


@pytest.fixture
async def node(start_http_node: StartNode) -> Node:
    return await start_http_node(server_admins="300:88.118/ADMIN")


def client(node: Node, creds: Credentials = A, **kw: Any) -> AdminClient:
    assert node.handle_port
    return AdminClient("127.0.0.1", node.handle_port, creds, **kw)


async def refused(call: object) -> int:
    with pytest.raises(AdminError) as err:
        await call  # type: ignore[misc]
    return err.value.response_code


@pytest.mark.parametrize("session", [False, True], ids=["challenge", "session"])
async def test_the_whole_admin_flow(node: Node, api: Api, session: bool) -> None:
    async with client(node, session=session) as c:
        assert await c.create(H, (URL,)) == H
        await c.add(H, (HandleValue(2, "EMAIL", b"qa@example.com"),))
        await c.modify(H, (HandleValue(1, "URL", b"https://example.com/native-2"),))
        # Signed and visible over HTTP at once, with the native writer in its history.
        got = (await api.get(f"/api/handles/{H}")).json["values"]
        assert {v["type"] for v in got} == {"URL", "EMAIL", "HS_SIGNATURE"}
        assert (
            next(v for v in got if v["index"] == 1)["data"]["value"]
            == "https://example.com/native-2"
        )
        await c.remove(H, (2,))
        assert H in await c.list_handles("88.118.2")
        await c.delete(H)
        assert (await api.get(f"/api/handles/{H}")).status == 404


async def test_refusals_before_the_challenge(node: Node) -> None:
    """Checked before anyone is challenged, as the reference does: RC 301, 101, 202, 201."""
    async with client(node, Credentials("88.118.2/ADMIN", 300, secret=b"never-asked")) as c:
        assert await refused(c.create("99.9/X", (URL,))) == ResponseCode.SERVER_NOT_RESP
        assert (
            await refused(c.create("88.118.2/ROLL-2026-000123", (URL,)))
            == ResponseCode.HANDLE_ALREADY_EXISTS
        )
        assert (
            await refused(c.create(H, (HandleValue(0, "URL", b"x"),))) == ResponseCode.INVALID_VALUE
        )
        assert await refused(c.create(H, (URL, URL))) == ResponseCode.VALUE_ALREADY_EXISTS
        # The wrong secret is only ever looked at once the checks above pass.
        assert await refused(c.create(H, (URL,))) == ResponseCode.AUTHENTICATION_FAILED


async def test_refusals_as_the_identity(node: Node) -> None:
    async with client(node) as c:
        await c.create(H, (URL,))
        await c.add(H, (URL,))  # the very value again: a retried add succeeds
        taken = HandleValue(1, "URL", b"https://example.com/other")
        assert await refused(c.add(H, (taken,))) == ResponseCode.VALUE_ALREADY_EXISTS
        assert (
            await refused(c.modify(H, (HandleValue(7, "URL", b"x"),)))
            == ResponseCode.VALUES_NOT_FOUND
        )
        assert await refused(c.remove(H, (7,))) == ResponseCode.VALUES_NOT_FOUND
        assert await refused(c.delete("88.118.2/NO-SUCH")) == ResponseCode.HANDLE_NOT_FOUND
        assert await refused(c.add("88.118.2/NO-SUCH", (URL,))) == ResponseCode.HANDLE_NOT_FOUND
        # The node's own prefix records are the node's.
        assert (
            await refused(c.create("0.NA/88.118.2", (URL,)))
            == ResponseCode.INSUFFICIENT_PERMISSIONS
        )


async def test_enterprises_are_isolated_natively(node: Node) -> None:
    async with client(node) as a:
        await a.create(H, (URL,))
    async with client(node, B) as b:
        assert await refused(b.create("88.118.2/BY-B", (URL,))) == ResponseCode.INVALID_ADMIN
        assert await refused(b.modify(H, (URL,))) == ResponseCode.INVALID_ADMIN
        assert await refused(b.delete(H)) == ResponseCode.INVALID_ADMIN
        assert await refused(b.list_handles("88.118.2")) == ResponseCode.INVALID_ADMIN
        await b.create("88.118.3/BY-B", (URL,))  # its own prefix: fine


async def test_listing_comes_in_chunks_of_fifty(node: Node) -> None:
    async with client(node) as c:
        names = [f"88.118.2/LIST-{n:03d}" for n in range(120)]
        await asyncio.gather(*(c.create(n, (URL,)) for n in names))
        listed = await c.list_handles("88.118.2")
    assert set(names) <= set(listed)
    # On the wire: ceil(n / 50) replies, CONT on all but the last (admin capture #9).
    async with client(node) as c:
        request = c._request(OpCode.LIST_HANDLES, HandleRequest("0.NA/88.118.2"), OpFlag(0))
        replies = await c._exchange(request)
        assert replies[0].header.response_code == ResponseCode.AUTHENTICATION_NEEDED
        replies = await c._exchange(c._answer(request, replies[0]))
    assert len(replies) == -(-len(listed) // 50) >= 3
    assert [OpFlag.CONT in r.header.flags for r in replies] == [True] * (len(replies) - 1) + [False]


async def test_home_unhome_and_list_homed_are_for_server_admins(node: Node, api: Api) -> None:
    async with client(node) as c:  # an enterprise admin
        assert await refused(c.home("88.120")) == ResponseCode.INVALID_ADMIN
    assert (await api.get("/api/handles/88.120/X")).json[
        "responseCode"
    ] == ResponseCode.SERVER_NOT_RESP
    async with client(node, OP) as op:
        await op.home("88.120")
        assert node.resolver is not None
        await asyncio.wait_for(
            node.resolver.served.wait_until(lambda: node.resolver.served.serves("88.120")), 10
        )  # type: ignore[union-attr]
        assert "0.NA/88.120" in await op.list_homed()
        assert (await api.get("/api/handles/88.120/X")).json[
            "responseCode"
        ] == ResponseCode.HANDLE_NOT_FOUND
        await op.unhome("88.120")
        await asyncio.wait_for(
            node.resolver.served.wait_until(lambda: not node.resolver.served.serves("88.120")), 10
        )  # type: ignore[union-attr]
        assert "0.NA/88.120" not in await op.list_homed()


async def test_administration_is_served_over_tcp_only(node: Node) -> None:
    """The site record marks UDP as a query interface only, and means it."""
    assert node.site is not None and node.handle_port
    kinds = {(i.protocol, i.type) for i in node.site.info.servers[0].interfaces}
    assert (InterfaceProtocol.UDP, InterfaceType.QUERY) in kinds
    assert (InterfaceProtocol.TCP, InterfaceType.BOTH) in kinds
    udp = NativeClient("127.0.0.1", node.handle_port)
    message = udp._message(OpCode.CREATE_HANDLE, ValuesRequest(H, (URL,)), OpFlag(0))
    reply = await udp._exchange(message)
    assert reply.header.response_code == ResponseCode.OPERATION_NOT_SUPPORTED


async def test_create_of_an_existing_handle_is_101_without_a_challenge(node: Node) -> None:
    assert node.handle_port
    request = Message(
        Envelope(request_id=77),
        Header(OpCode.CREATE_HANDLE, flags=OpFlag(0)),
        ValuesRequest("88.118.2/ROLL-2026-000123", (URL,)),
    )
    reply = decode(await tcp_exchange("127.0.0.1", node.handle_port, encode(request)))
    assert (reply.header.response_code, reply.request_id) == (
        ResponseCode.HANDLE_ALREADY_EXISTS,
        77,
    )


async def test_a_derived_prefix_record_needs_add_na_on_its_parent(node: Node, api: Api) -> None:
    """CREATE of 0.NA/88.118.2.7 is the parent's admins' (ADD_NA on 0.NA/88.118.2), not
    a question about prefix 88.118.2.7 itself; another enterprise is no admin there."""
    derived = "0.NA/88.118.2.7"
    async with client(node, B) as b:
        assert await refused(b.create(derived, (URL,))) == ResponseCode.INVALID_ADMIN
    async with client(node) as a:
        assert await a.create(derived, (URL,)) == derived
    got = await api.get(f"/api/handles/{derived}")
    assert got.status == 200 and got.json["values"][0]["type"] == "URL"


async def test_admin_groups_are_followed_natively(node: Node) -> None:
    """HS_ADMIN naming an HS_VLIST group admits its members (the yarn maker here) for
    just the bits it grants: MODIFY, not DELETE."""
    group = "88.118.2/PARTNERS"
    shared = "88.118.2/SHARED-NATIVE"
    members = encode_vlist([Reference("88.118.3/ADMIN", 300)])
    grant = AdminRef(group, 200, int(AdminPerm.ADD_VALUE | AdminPerm.MODIFY_VALUE))
    owner = AdminRef("88.118.2/ADMIN", 300, int(ALL_ADMIN_PERMS))
    async with client(node) as a:
        await a.create(group, (HandleValue(200, "HS_VLIST", members),))
        await a.create(
            shared,
            (
                URL,
                HandleValue(100, "HS_ADMIN", encode_admin(owner)),
                HandleValue(101, "HS_ADMIN", encode_admin(grant)),
            ),
        )
    async with client(node, B) as b:
        await b.modify(shared, (HandleValue(1, "URL", b"https://example.com/by-partner"),))
        assert await refused(b.delete(shared)) == ResponseCode.INSUFFICIENT_PERMISSIONS
    async with client(node, OP) as op:  # a server admin, not in the group: still admitted
        await op.remove(shared, (101,))
    async with client(node, B) as b:
        assert (
            await refused(b.modify(shared, (HandleValue(1, "URL", b"x"),)))
            == ResponseCode.INVALID_ADMIN
        )


async def test_nothing_secret_in_logs_metrics_or_replies(
    node: Node, api: Api, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A secret set natively (HS_SECKEY in a CREATE, in a session) is sealed at rest,
    shown masked, works for a login, and appears in no log line, metric or reply; nor do
    the admin's own secret or the session key."""
    caplog.set_level(logging.DEBUG)
    identity = "88.118.2/NATIVE-ADMIN"
    plain = b"Native-Secret-4d1c-never-shown"
    async with client(node, session=True) as c:
        itself = AdminRef(identity, 300, int(ALL_ADMIN_PERMS))
        await c.create(
            identity,
            (
                HandleValue(300, "HS_SECKEY", plain, permissions=0b1100),
                HandleValue(100, "HS_ADMIN", encode_admin(itself)),
                URL,
            ),
        )
        assert c._session is not None  # the DH session the node agreed
        keys = [c._session.key]
    # The new identity logs in with the secret it was given, in a session of its own, and
    # reads its record (encrypted to it: non-public values): the secret shows as set only.
    async with client(node, Credentials(identity, 300, secret=plain), session=True) as me:
        await me.add(identity, (HandleValue(2, "EMAIL", b"ops@example.com"),))
        values = await me.resolve(identity)
        assert me._session is not None
        keys.append(me._session.key)
    seckey = next(v for v in values if v.index == 300)
    assert seckey.data == SHOWN
    exposition = generate_latest(node.metrics.registry)
    logs = caplog.text.encode()
    everything = await all_record_bytes(database_url)
    me_basic = basic(f"300:{identity}", plain.decode())
    replies = (await api.get(f"/api/handles/{identity}", headers=me_basic)).text.encode()
    for secret in (plain, SILK_MILL.admin_secret.encode()):
        for where, data in (
            ("logs", logs),
            ("metrics", exposition),
            ("records", everything),
            ("reply", replies),
        ):
            assert secret not in data, where
    for key in keys:
        assert key.hex().encode() not in logs and key not in logs
    assert b"300:88.118.2/NATIVE-ADMIN" in logs  # the logs do name who wrote


async def test_the_client_recovers_a_session_the_node_dropped(node: Node) -> None:
    """RC 500 in a session (the node restarted, evicted it, or it idled out): the client
    drops it and the operation succeeds in a new one, as the reference client's does."""
    clock = node.monotonic
    assert isinstance(clock, SteppedClock)
    async with client(node, session=True) as c:
        await c.create(H, (URL,))
        assert c._session is not None
        first = c._session.id
        clock.advance(node.settings.native_session_idle_timeout_s + 1)
        await c.add(H, (HandleValue(2, "EMAIL", b"qa@example.com"),))
        assert c._session is not None and c._session.id != first


async def test_a_setup_not_signed_by_the_known_key_is_refused(node: Node) -> None:
    forged = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    async with client(node, session=True, server_key=forged) as c:
        with pytest.raises(ClientError, match="not signed by the server's key"):
            await c.create(H, (URL,))
    assert node.site is not None
    async with client(node, session=True, server_key=node.site.key.public_key()) as c:
        assert await c.create(H, (URL,)) == H
