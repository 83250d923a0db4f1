"""HS_SECKEY secrets: sealed at rest by every writer (HTTP, CLI, demo seed) with a key kept
outside the database, never shown to anyone (admins see that a secret is set), never
logged, never public; older hashed rows still check a Basic password."""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import replace
from pathlib import Path

import asyncpg
import pytest

from node.app import Node
from node.demo.dataset import ENTERPRISES
from node.secrets.legacy import hash_secret, looks_hashed
from node.secrets.vault import SHOWN, SealedElsewhere, SecretVault, looks_sealed
from protocol.handle import normalise
from protocol.valuecodec import decode_values, encode_values
from tests.node.conftest import StartNode
from tests.node.http_support import A, Api, admin_of, all_record_bytes, basic, db_state
from tests.node.process_support import MILL, run_idnode

PLAIN = "Plain-Secret-7f3e9a-never-stored"
NEW_ADMIN = "88.118.2/MES-ADMIN"
RECORD = [
    {
        "index": 100,
        "type": "HS_ADMIN",
        "data": {
            "format": "admin",
            "value": {"handle": NEW_ADMIN, "index": 300, "permissions": "111111111111"},
        },
    },
    {"index": 300, "type": "HS_SECKEY", "data": PLAIN},  # default permissions: public!
]


async def _stored_secret(url: str, handle: str, index: int = 300) -> bytes:
    conn = await asyncpg.connect(url)
    try:
        raw = await conn.fetchval(
            'SELECT "values" FROM handles WHERE handle_key = $1', normalise(handle)
        )
    finally:
        await conn.close()
    return next(v.data for v in decode_values(raw) if v.index == index)


def test_sealing() -> None:
    vault = SecretVault(b"k" * 32)
    sealed = vault.seal(b"s3cret")
    assert looks_sealed(sealed) and b"s3cret" not in sealed
    assert vault.open(sealed) == b"s3cret" and vault.seal(b"s3cret") != sealed  # fresh nonce
    assert vault.key_of(sealed) == b"s3cret"
    with pytest.raises(SealedElsewhere):
        SecretVault(b"x" * 32).open(sealed)
    assert SecretVault(b"x" * 32).key_of(sealed) is None
    assert vault.key_of(hash_secret(b"s3cret", 1000)) is None  # a hash cannot key a MAC
    assert "k" * 8 not in repr(vault)


async def test_http_write_seals_forces_private_shows_nothing_and_logs_nothing(
    api: Api, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    r = await api.put("/api/handles/" + NEW_ADMIN, RECORD, headers=admin_of(A))
    assert r.status == 200
    # Not public: an anonymous read does not see it (100 HS_ADMIN, 400 HS_SIGNATURE).
    assert [v["index"] for v in (await api.get("/api/handles/" + NEW_ADMIN)).json["values"]] == [
        100,
        400,
    ]
    # The new admin authenticates with the secret it was given...
    me = basic(f"300:{NEW_ADMIN}", PLAIN)
    r = await api.get("/api/handles/" + NEW_ADMIN, headers=me)
    seckey = next(v for v in r.json["values"] if v["index"] == 300)
    # ...and even it reads that a secret is set, not the secret nor its sealed form.
    assert seckey["permissions"] == "1100"
    assert PLAIN not in r.text and seckey["data"]["format"] == "base64"
    assert base64.b64decode(seckey["data"]["value"]) == SHOWN
    assert looks_sealed(await _stored_secret(database_url, NEW_ADMIN))
    # Its HS_ADMIN names only itself now: A is no longer an admin of it.
    assert (await api.put("/api/handles/" + NEW_ADMIN, RECORD, headers=admin_of(A))).status == 403
    # Re-sending the same secret, or writing back the record as read, changes nothing.
    state = await db_state(database_url)
    assert (await api.put("/api/handles/" + NEW_ADMIN, RECORD, headers=me)).status == 200
    as_read = [v for v in r.json["values"] if v["type"] != "HS_SIGNATURE"]
    assert (await api.put("/api/handles/" + NEW_ADMIN, as_read, headers=me)).status == 200
    assert await db_state(database_url) == state
    assert (await api.get("/api/handles/" + NEW_ADMIN, headers=me)).status == 200  # secret kept
    # A wrong secret fails (and is not echoed or logged either).
    wrong = basic(f"300:{NEW_ADMIN}", PLAIN + "x")
    assert (await api.get("/api/handles/" + NEW_ADMIN, headers=wrong)).status == 401
    everything = await all_record_bytes(database_url)
    for ent in ENTERPRISES:  # the demo secrets too
        assert ent.admin_secret.encode() not in everything
    assert PLAIN.encode() not in everything
    assert PLAIN not in caplog.text and A.admin_secret not in caplog.text
    assert "300:88.118.2/MES-ADMIN" in caplog.text  # the logs do name the admin


async def test_protected_forms_are_not_secrets(api: Api, database_url: str) -> None:
    """A client cannot plant a pre-hashed secret (its iterations are a cost bomb) or
    copy another record's sealed one; ``SHOWN`` only keeps a secret already there."""
    assert (await api.put("/api/handles/" + NEW_ADMIN, RECORD, headers=admin_of(A))).status == 200
    sealed = await _stored_secret(database_url, NEW_ADMIN)
    for data in (sealed, hash_secret(b"x", 5_000_000), SHOWN):
        value = {
            "index": 300,
            "type": "HS_SECKEY",
            "data": {"format": "base64", "value": base64.b64encode(data).decode()},
        }
        r = await api.put("/api/handles/88.118.2/COPY", [value], headers=admin_of(A))
        assert (r.status, r.json["responseCode"]) == (400, 202), r.json
        assert "protected form" in r.json["message"]


async def test_a_hashed_row_still_checks_basic_until_set_again(
    http_node: Node, api: Api, database_url: str
) -> None:
    """Rows from before sealing keep working for HTTP Basic; ``handle set-secret``
    replaces them with a sealed secret (read from stdin, never an argument)."""
    assert (await api.put("/api/handles/" + NEW_ADMIN, RECORD, headers=admin_of(A))).status == 200
    conn = await asyncpg.connect(database_url)
    try:
        raw = await conn.fetchval(
            'SELECT "values" FROM handles WHERE handle_key = $1', normalise(NEW_ADMIN)
        )
        old = [
            replace(v, data=hash_secret(PLAIN.encode(), 1000)) if v.index == 300 else v
            for v in decode_values(raw)
        ]
        await conn.execute(
            'UPDATE handles SET "values" = $2 WHERE handle_key = $1',
            normalise(NEW_ADMIN),
            encode_values(tuple(old)),
        )
    finally:
        await conn.close()
    assert looks_hashed(await _stored_secret(database_url, NEW_ADMIN))
    me = basic(f"300:{NEW_ADMIN}", PLAIN)
    assert (await api.get("/api/handles/" + NEW_ADMIN + "?auth=true", headers=me)).status == 200
    result = run_idnode(
        "handle", "set-secret", NEW_ADMIN, "300", "--database-url", database_url,
        "--data-dir", str(http_node.settings.data_dir), input="a-new-secret\n",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "a-new-secret" not in result.stdout + result.stderr
    assert looks_sealed(await _stored_secret(database_url, NEW_ADMIN))
    assert (await api.get("/api/handles/" + NEW_ADMIN + "?auth=true", headers=me)).status == 401
    again = basic(f"300:{NEW_ADMIN}", "a-new-secret")
    assert (await api.get("/api/handles/" + NEW_ADMIN + "?auth=true", headers=again)).status == 200


async def test_cli_put_seals_secrets_and_get_shows_none(database_url: str, tmp_path: Path) -> None:
    env = {
        "IDNODE_DATABASE_URL": database_url,
        "IDNODE_DATA_DIR": str(tmp_path / "data"),  # signing and secrets keys of CLI writes go here
    }
    for args in (
        ["enterprise", "add", "--name", "盛泽示例丝绸", "--credit-code", MILL],
        ["prefix", "add", "88.118.2", "--enterprise", MILL],
    ):
        assert run_idnode(*args, env=env).returncode == 0
    body = json.dumps([{"index": 300, "type": "HS_SECKEY", "data": PLAIN}])
    result = run_idnode("handle", "put", "88.118.2/CLI-ADMIN", "-f", "-", env=env, input=body)
    assert result.returncode == 0, result.stderr
    assert PLAIN.encode() not in await all_record_bytes(database_url)
    got = json.loads(run_idnode("handle", "get", "88.118.2/CLI-ADMIN", env=env).stdout)
    assert got[0]["permissions"] == "1100" and got[0]["data"]["format"] == "base64"
    assert base64.b64decode(got[0]["data"]["value"]) == SHOWN
    # get | put onto the same handle keeps the secret; onto another it is refused.
    same = run_idnode(
        "handle", "put", "88.118.2/CLI-ADMIN", "-f", "-", env=env, input=json.dumps(got)
    )
    assert same.returncode == 0 and "unchanged" in same.stdout, same.stderr
    copy = run_idnode(
        "handle", "put", "88.118.2/CLI-ADMIN-2", "-f", "-", env=env, input=json.dumps(got)
    )
    assert copy.returncode == 1 and "protected form" in copy.stderr
    history = run_idnode("handle", "history", "88.118.2/CLI-ADMIN", env=env)
    assert history.returncode == 0 and PLAIN not in history.stdout


async def test_demo_reseed_changes_nothing(start_http_node: StartNode, database_url: str) -> None:
    await start_http_node()
    state = await db_state(database_url)
    node: Node = await start_http_node()  # seeds the same database again
    assert await db_state(database_url) == state
    assert node.http_port
