"""HS_SECKEY secrets are stored as salted PBKDF2 hashes by every writer (HTTP, CLI,
demo seed), never in clear, never logged, never public; the stored form verifies."""

from __future__ import annotations

import json
import logging

import asyncpg
import pytest

from node.app import Node
from node.auth.secrets import (
    DEFAULT_ITERATIONS,
    MAX_ITERATIONS,
    SecretFormatError,
    hash_secret,
    looks_hashed,
    parse_hashed,
    verify_secret,
)
from node.demo.dataset import ENTERPRISES
from tests.node.cli.test_cli import MILL
from tests.node.http_support import (
    A,
    Api,
    StartNode,
    admin_of,
    basic,
    db_state,
)
from tests.node.process_support import run_idnode

PLAIN = "Plain-Secret-7f3e9a-never-stored"


async def _all_bytes(url: str) -> bytes:
    """Every byte of every handle record and history row."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch('SELECT "values" FROM handles')
        hist = await conn.fetch("SELECT old_values, new_values FROM handle_history")
    finally:
        await conn.close()
    out = b"".join(bytes(r["values"]) for r in rows)
    return out + b"".join(
        bytes(v) for r in hist for v in (r["old_values"], r["new_values"]) if v is not None
    )


def test_format_and_verification() -> None:
    stored = hash_secret(b"s3cret", 1000)
    assert looks_hashed(stored) and stored[:2] == b"\x00\x01"
    parsed = parse_hashed(stored)
    assert (parsed.iterations, len(parsed.salt), len(parsed.key)) == (1000, 16, 32)
    assert verify_secret(b"s3cret", stored) and not verify_secret(b"s3cres", stored)
    assert hash_secret(b"s3cret", 1000) != stored  # a fresh salt every time
    assert not verify_secret(b"s3cret", b"s3cret")  # a clear stored secret never verifies
    assert parse_hashed(hash_secret(b"x")).iterations == DEFAULT_ITERATIONS == 600_000
    for broken in (stored[:-1], stored + b"\0", b"\x00\x01\xff\xff\xff\xff" + stored[6:]):
        with pytest.raises(SecretFormatError):
            parse_hashed(broken)
    assert MAX_ITERATIONS == 5_000_000


async def test_http_write_hashes_forces_private_and_logs_nothing(
    api: Api, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    new_admin = "88.118.2/MES-ADMIN"
    record = [
        {
            "index": 100,
            "type": "HS_ADMIN",
            "data": {
                "format": "admin",
                "value": {"handle": new_admin, "index": 300, "permissions": "111111111111"},
            },
        },
        {"index": 300, "type": "HS_SECKEY", "data": PLAIN},  # default permissions: public!
    ]
    r = await api.put("/api/handles/" + new_admin, record, headers=admin_of(A))
    assert r.status == 200
    # Not public: an anonymous read does not see it.
    assert [v["index"] for v in (await api.get("/api/handles/" + new_admin)).json["values"]] == [
        100,
        400,
    ]  # + HS_SIGNATURE
    # The new admin authenticates with the plain secret it was given...
    r = await api.get("/api/handles/" + new_admin, headers=basic(f"300:{new_admin}", PLAIN))
    seckey = next(v for v in r.json["values"] if v["index"] == 300)
    assert seckey["permissions"] == "1100" and seckey["data"]["format"] == "base64"
    # ...and what is stored is the hash, not the secret.
    import base64

    assert looks_hashed(base64.b64decode(seckey["data"]["value"]))
    # Its HS_ADMIN names only itself now: A is no longer an admin of it.
    assert (await api.put("/api/handles/" + new_admin, record, headers=admin_of(A))).status == 403
    # Re-sending the same secret keeps the same hash: no new version, no history row.
    state = await db_state(database_url)
    me = basic(f"300:{new_admin}", PLAIN)
    assert (await api.put("/api/handles/" + new_admin, record, headers=me)).status == 200
    assert await db_state(database_url) == state
    # A wrong secret fails (and is not echoed or logged either).
    assert (
        await api.get("/api/handles/" + new_admin, headers=basic(f"300:{new_admin}", PLAIN + "x"))
    ).status == 401
    everything = await _all_bytes(database_url)
    for ent in ENTERPRISES:  # the demo secrets too
        assert ent.admin_secret.encode() not in everything
    assert PLAIN.encode() not in everything
    assert PLAIN not in caplog.text and A.admin_secret not in caplog.text
    assert "300:88.118.2/MES-ADMIN" in caplog.text  # the logs do name the admin


async def test_cli_put_hashes_secrets(database_url: str, tmp_path: object) -> None:
    env = {
        "IDNODE_DATABASE_URL": database_url,
        "IDNODE_SECRET_HASH_ITERATIONS": "1000",
        "IDNODE_DATA_DIR": str(tmp_path) + "/data",  # signing keys of CLI writes go here
    }
    for args in (
        ["enterprise", "add", "--name", "盛泽示例丝绸", "--credit-code", MILL],
        ["prefix", "add", "88.118.2", "--enterprise", MILL],
    ):
        assert run_idnode(*args, env=env).returncode == 0
    body = json.dumps([{"index": 300, "type": "HS_SECKEY", "data": PLAIN}])
    result = run_idnode("handle", "put", "88.118.2/CLI-ADMIN", "-f", "-", env=env, input=body)
    assert result.returncode == 0, result.stderr
    assert PLAIN.encode() not in await _all_bytes(database_url)
    got = json.loads(run_idnode("handle", "get", "88.118.2/CLI-ADMIN", env=env).stdout)
    assert got[0]["permissions"] == "1100" and got[0]["data"]["format"] == "base64"
    # get | put copies the hash as it is (it is already in the stored form).
    copy = run_idnode(
        "handle", "put", "88.118.2/CLI-ADMIN-2", "-f", "-", env=env, input=json.dumps(got)
    )
    assert copy.returncode == 0, copy.stderr
    again = json.loads(run_idnode("handle", "get", "88.118.2/CLI-ADMIN-2", env=env).stdout)
    assert again[0]["data"] == got[0]["data"]
    assert run_idnode("handle", "delete", "88.118.2/CLI-ADMIN-2", env=env).returncode == 0


async def test_demo_reseed_changes_nothing(start_http_node: StartNode, database_url: str) -> None:
    await start_http_node()
    state = await db_state(database_url)
    node: Node = await start_http_node()  # seeds the same database again
    assert await db_state(database_url) == state
    assert node.http_port
