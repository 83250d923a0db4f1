"""``idnode admin`` as an operator runs it: the real command in a subprocess (as
test_cli.py runs it) against a real node with the demo data, its effects read back over
the node's HTTP API, its refusals one line each with the secret nowhere in the output."""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import json
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from node.app import Node
from node.cli.entry import build_parser
from node.demo.dataset import OPERATOR, SILK_MILL, YARN_MAKER
from node.secrets.vault import SHOWN
from protocol.keys import encode_public_key
from tests.node.challenge_support import new_key, pubkey_value
from tests.node.conftest import StartNode, ipv6_loopback
from tests.node.http_support import A_HANDLE, Api, admin_of
from tests.node.native_support import served
from tests.node.process_support import run_idnode

A_ADMIN, B_ADMIN, OP_ADMIN = "300:88.118.2/ADMIN", "300:88.118.3/ADMIN", "300:88.118/ADMIN"
H = "88.118.2/CLI-ADMIN-1"
WRONG = "not-the-mill-secret-7Qx"  # must never appear in any output
SUBCOMMANDS = (
    "create",
    "add",
    "modify",
    "remove",
    "delete",
    "list",
    "home",
    "unhome",
    "homed",
    "resolve",
)


@pytest.fixture
async def node(start_http_node: StartNode) -> Node:
    return await start_http_node(server_admins=OP_ADMIN)


@pytest.fixture
async def web(node: Node) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(session, f"http://127.0.0.1:{node.http_port}")


def secret_file(tmp_path: Path, secret: str, name: str = "secret") -> str:
    path = tmp_path / name
    path.write_text(secret + "\n", encoding="utf-8")  # as an editor saves it
    return str(path)


async def idnode(*args: str, input: str = "") -> subprocess.CompletedProcess[str]:
    """The command in a thread: the node under test answers on this test's loop. Stdin is
    always a pipe, so a test can never sit at a password prompt."""
    return await asyncio.to_thread(run_idnode, *args, input=input)


async def ok(*args: str, input: str = "") -> str:
    result = await idnode(*args, input=input)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout


async def fails(*args: str, input: str = "", secret: str | None = None) -> str:
    """The one stderr line of a refusal: no traceback, nothing on stdout, and the secret
    the command was given nowhere."""
    result = await idnode(*args, input=input)
    assert result.returncode != 0, result.stdout
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("idnode: error: "), result.stderr
    if secret is not None:
        assert secret not in result.stdout + result.stderr
    return lines[0]


async def record(web: Api, handle: str) -> dict[int, tuple[str, object]] | None:
    """index -> (type, data) of the handle's values over HTTP; None when it is missing."""
    r = await web.get(f"/api/handles/{handle}")
    if r.status == 404:
        return None
    assert r.status == 200, r.text
    return {v["index"]: (v["type"], v["data"]["value"]) for v in r.json["values"]}


@pytest.mark.parametrize(
    ("source", "session"),
    [("secret-file", False), ("stdin", False), ("secret-file", True)],
    ids=["secret-file", "secret-on-stdin", "session"],
)
async def test_the_whole_flow(
    node: Node, web: Api, tmp_path: Path, source: str, session: bool
) -> None:
    server = ["--server", f"127.0.0.1:{node.handle_port}", "--auth", A_ADMIN]
    secret_stdin = source == "stdin"
    if secret_stdin:
        secret_input = SILK_MILL.admin_secret + "\n"
    else:
        server += ["--secret-file", secret_file(tmp_path, SILK_MILL.admin_secret)]
        secret_input = ""
    if session:
        server.append("--session")
    setups = served(node, "tcp", "session_setup")

    async def run(*args: str, input: str | None = None) -> str:
        return await ok(*args, *server, input=secret_input if input is None else input)

    out = await run(
        "admin", "create", H,
        "--value", "1:URL:https://example.com/cli", "--value", "2:EMAIL:qa@example.com",
    )  # fmt: skip
    assert out == f"{H} created\n"
    got = await record(web, H)
    assert got is not None
    assert (got[1], got[2]) == (("URL", "https://example.com/cli"), ("EMAIL", "qa@example.com"))

    # Binary data in the REST API's JSON form, from a file (the secret holds stdin) or stdin.
    blob = [{"index": 3, "type": "BLOB", "data": {"format": "base64", "value": "AP8Q"}}]
    if secret_stdin:
        (tmp_path / "values.json").write_text(json.dumps(blob), encoding="utf-8")
        out = await run("admin", "add", H, "--values-json", str(tmp_path / "values.json"))
    else:
        out = await run("admin", "add", H, "--values-json", "-", input=json.dumps(blob))
    assert out == f"{H}: added values 3\n"
    got = await record(web, H)
    assert got is not None and got[3] == ("BLOB", "AP8Q")

    await run("admin", "modify", H, "--value", "1:URL:https://example.com/cli-2")
    got = await record(web, H)
    assert got is not None and got[1] == ("URL", "https://example.com/cli-2")

    values = json.loads(await run("admin", "resolve", H, "--type", "URL"))
    assert [(v["index"], v["data"]) for v in values] == [
        (1, {"format": "string", "value": "https://example.com/cli-2"})
    ]

    assert await run("admin", "remove", H, "2", "3") == f"{H}: removed values 2, 3\n"
    got = await record(web, H)
    assert got is not None and {t for t, _ in got.values()} == {"URL", "HS_SIGNATURE"}

    listed = (await run("admin", "list", "88.118.2")).splitlines()
    assert H in listed and A_HANDLE in listed
    assert all(line.startswith("88.118.2/") for line in listed)
    assert listed == (await run("admin", "list", "0.NA/88.118.2")).splitlines()

    assert await run("admin", "delete", H) == f"{H} deleted\n"
    assert await record(web, H) is None
    assert H not in (await run("admin", "list", "88.118.2")).splitlines()
    # --session: a Diffie-Hellman session before each command's operation, and only then.
    assert served(node, "tcp", "session_setup") - setups == (9 if session else 0)


@pytest.mark.parametrize("session", [False, True], ids=["challenge", "session"])
async def test_resolve_as_the_admin_never_prints_a_secret(
    node: Node, tmp_path: Path, session: bool
) -> None:
    args = ["--server", f"127.0.0.1:{node.handle_port}", "--auth", A_ADMIN]
    args += ["--secret-file", secret_file(tmp_path, SILK_MILL.admin_secret)]
    args += ["--session"] if session else []
    setups = served(node, "tcp", "session_setup")
    # In a session the node encrypts this reply (non-public values, from 2.8): the
    # client opens it with the session key.
    out = await ok("admin", "resolve", "88.118.2/ADMIN", *args)
    values = {v["index"]: v for v in json.loads(out)}
    # The admin reads the non-public HS_SECKEY, as "set", never as the secret itself.
    assert values[300]["type"] == "HS_SECKEY" and values[300]["permissions"] == "1100"
    assert base64.b64decode(values[300]["data"]["value"]) == SHOWN
    assert SILK_MILL.admin_secret not in out
    only = json.loads(await ok("admin", "resolve", "88.118.2/ADMIN", "--index", "300", *args))
    assert [v["index"] for v in only] == [300]
    assert served(node, "tcp", "session_setup") - setups == (2 if session else 0)


@pytest.mark.parametrize("kind", ["rsa", "ec", "dsa"])
async def test_a_public_key_identity(node: Node, web: Api, tmp_path: Path, kind: str) -> None:
    # Index 300 of 88.118.2/ADMIN (what the prefix's HS_ADMIN names) becomes an HS_PUBKEY.
    key = new_key(kind)
    r = await web.put(
        "/api/handles/88.118.2/ADMIN?index=300", [pubkey_value(key)], headers=admin_of(SILK_MILL)
    )
    assert r.status == 200, r.text
    pem = tmp_path / "admin.pem"
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    args = ["--server", f"127.0.0.1:{node.handle_port}", "--auth", A_ADMIN, "--key-file", str(pem)]
    await ok("admin", "create", H, "--value", "1:URL:https://example.com/key", *args)
    got = await record(web, H)
    assert got is not None and got[1] == ("URL", "https://example.com/key")
    await ok("admin", "delete", H, *args)
    assert await record(web, H) is None

    # Another key of the same kind proves nothing.
    other = tmp_path / "other.pem"
    other.write_bytes(
        new_key(kind).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    line = await fails("admin", "create", H, "--value", "1:URL:x", *args[:-1], str(other))
    assert "AUTHENTICATION_FAILED (403)" in line
    assert await record(web, H) is None


async def test_home_unhome_and_homed_as_the_server_admin(node: Node, tmp_path: Path) -> None:
    server = ["--server", f"127.0.0.1:{node.handle_port}"]
    op = [
        *server,
        "--auth",
        OP_ADMIN,
        "--secret-file",
        secret_file(tmp_path, OPERATOR.admin_secret),
    ]
    mill = [*server, "--auth", A_ADMIN]
    mill += ["--secret-file", secret_file(tmp_path, SILK_MILL.admin_secret, "mill")]
    assert node.resolver is not None
    served_prefixes = node.resolver.served

    assert "INVALID_ADMIN (400)" in await fails("admin", "home", "88.120", *mill)
    assert not served_prefixes.serves("88.120")
    assert "88.120" not in (await ok("admin", "homed", *op)).splitlines()

    assert await ok("admin", "home", "88.120", *op) == "88.120 homed\n"
    await asyncio.wait_for(served_prefixes.wait_until(lambda: served_prefixes.serves("88.120")), 10)
    # Bare prefixes, one a line, as home and unhome take them (not 0.NA/88.120).
    assert "88.120" in (await ok("admin", "homed", *op)).splitlines()

    assert await ok("admin", "unhome", "0.NA/88.120", *op) == "88.120 unhomed\n"
    await asyncio.wait_for(
        served_prefixes.wait_until(lambda: not served_prefixes.serves("88.120")), 10
    )
    assert "88.120" not in (await ok("admin", "homed", *op)).splitlines()


async def test_a_wrong_secret_is_one_line_and_never_shown(
    node: Node, web: Api, tmp_path: Path
) -> None:
    server = ["--server", f"127.0.0.1:{node.handle_port}", "--auth", A_ADMIN]
    create = ["admin", "create", H, "--value", "1:URL:https://example.com/x", *server]
    line = await fails(*create, "--secret-file", secret_file(tmp_path, WRONG), secret=WRONG)
    assert line == "idnode: error: AUTHENTICATION_FAILED (403) for 300:88.118.2/ADMIN"
    line = await fails(*create, input=WRONG + "\n", secret=WRONG)  # from stdin: the same
    assert "AUTHENTICATION_FAILED (403)" in line
    line = await fails(*create, "--session", input=WRONG, secret=WRONG)
    assert "AUTHENTICATION_FAILED (403)" in line
    assert await record(web, H) is None


async def test_one_enterprise_cannot_touch_anothers_handles(
    node: Node, web: Api, tmp_path: Path
) -> None:
    before = await record(web, A_HANDLE)
    b = ["--server", f"127.0.0.1:{node.handle_port}", "--auth", B_ADMIN]
    b += ["--secret-file", secret_file(tmp_path, YARN_MAKER.admin_secret)]
    for args in (
        ["modify", A_HANDLE, "--value", "1:URL:https://example.com/hijacked"],
        ["create", "88.118.2/BY-B", "--value", "1:URL:https://example.com/b"],
        ["delete", A_HANDLE],
        ["list", "88.118.2"],
    ):
        line = await fails("admin", *args, *b)
        assert "INVALID_ADMIN (400)" in line, args
    assert await record(web, A_HANDLE) == before
    assert await record(web, "88.118.2/BY-B") is None
    await ok("admin", "create", "88.118.3/BY-B", "--value", "1:URL:https://example.com/b", *b)
    assert await record(web, "88.118.3/BY-B") is not None


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_mistakes_in_the_command_are_one_line(tmp_path: Path) -> None:
    """Caught before any connection: the server named is one that refuses them all."""
    port = closed_port()
    args = ["--server", f"127.0.0.1:{port}", "--auth", A_ADMIN]
    args += ["--secret-file", secret_file(tmp_path, SILK_MILL.admin_secret)]
    line = await fails("admin", "add", H, "--value", "1-URL-https://example.com", *args)
    assert "--value '1-URL-https://example.com' is not INDEX:TYPE:DATA" in line
    line = await fails("admin", "add", H, "--value", "x:URL:https://example.com", *args)
    assert "is not INDEX:TYPE:DATA" in line
    assert "no values" in await fails("admin", "modify", H, *args)
    line = await fails("admin", "add", H, "--value", "1:URL:a", "--value", "1:EMAIL:b", *args)
    assert "more than once" in line
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('[{"index": 1, "type": "URL"}]', encoding="utf-8")
    line = await fails("admin", "add", H, "--values-json", str(bad_json), *args)
    assert "data is missing" in line
    # A secret as a value would land in the shell history: refused, and not repeated.
    seckey = "301:HS_SECKEY:hunter2-secret"
    line = await fails("admin", "add", H, "--value", seckey, *args, secret="hunter2-secret")
    assert "--values-json" in line
    # Stdin holds one thing: the secret or the values.
    line = await fails(
        "admin", "add", H, "--values-json", "-", "--server", f"127.0.0.1:{port}", "--auth", A_ADMIN,
        input="[]",
    )  # fmt: skip
    assert "stdin cannot hold both" in line
    # And the refused connection itself is one line too.
    line = await fails("admin", "list", "88.118.2", *args)
    assert line == f"idnode: error: cannot reach 127.0.0.1:{port}: Connection refused"
    # The key file must be a key.
    line = await fails("admin", "list", "88.118.2", *args[:4], "--key-file", str(bad_json))
    assert "is not a PEM private key" in line


def test_no_option_takes_a_secret() -> None:
    """Secrets come from files, stdin or a prompt: no option of any admin subcommand
    takes one as its value (it would sit in the shell history and in ps)."""
    [group] = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    [leaves] = [
        a for a in group.choices["admin"]._actions if isinstance(a, argparse._SubParsersAction)
    ]
    assert set(leaves.choices) == set(SUBCOMMANDS)
    for name, leaf in leaves.choices.items():
        options = {o for a in leaf._actions for o in a.option_strings}
        assert {"--auth", "--secret-file", "--key-file", "--session"} <= options, name
        assert not {o for o in options if "secret" in o or "pass" in o} - {"--secret-file"}, name


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback")
async def test_an_ipv6_server(start_http_node: StartNode, tmp_path: Path) -> None:
    node = await start_http_node(bind="::1")
    args = ["--server", f"[::1]:{node.handle_port}", "--auth", A_ADMIN]
    args += ["--secret-file", secret_file(tmp_path, SILK_MILL.admin_secret)]
    assert A_HANDLE in (await ok("admin", "list", "88.118.2", *args)).splitlines()


async def test_a_silent_server_is_one_line_after_the_deadline(tmp_path: Path) -> None:
    """A server that takes the connection and never answers: the deadline, then one line
    (not a TimeoutError traceback)."""

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up and closes
        writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        line = await fails(
            "admin", "homed", "--server", f"127.0.0.1:{port}", "--auth", A_ADMIN,
            "--secret-file", secret_file(tmp_path, SILK_MILL.admin_secret), "--timeout-s", "0.5",
        )  # fmt: skip
    finally:
        server.close()
        await server.wait_closed()
    assert line == f"idnode: error: no reply from 127.0.0.1:{port} within 0.5 s"


async def test_a_site_file_pins_the_session_key(node: Node, tmp_path: Path) -> None:
    """With --site-info the session setup reply must be signed by that site's key: the
    node's own site file passes; one naming another key fails, before any operation."""
    assert node.site is not None and node.handle_port
    mine = tmp_path / "site.bin"
    mine.write_bytes(node.site.info.to_wire())
    forged_key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    server = dataclasses.replace(
        node.site.info.servers[0], public_key=encode_public_key(forged_key)
    )
    other = tmp_path / "other.bin"
    other.write_bytes(dataclasses.replace(node.site.info, servers=(server,)).to_wire())
    common = ("--server", f"127.0.0.1:{node.handle_port}", "--auth", OP_ADMIN, "--session")
    secret = secret_file(tmp_path, OPERATOR.admin_secret)
    assert "0.NA" not in await ok(
        "admin", "homed", *common, "--secret-file", secret, "--site-info", str(mine)
    )
    line = await fails(
        "admin", "homed", *common, "--secret-file", secret, "--site-info", str(other)
    )
    assert "not signed by the server's key" in line
