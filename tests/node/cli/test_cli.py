"""The idnode command against a real PostgreSQL: operators' round trips and mistakes."""

from __future__ import annotations

import json
from pathlib import Path

import asyncpg
import pytest

from tests.node.process_support import MILL, run_idnode

BAD_CHECK = MILL[:-1] + ("0" if MILL[-1] != "0" else "1")


@pytest.fixture
def env(database_url: str, tmp_path: Path) -> dict[str, str]:
    # A data dir of the test's own: CLI writes keep their signing keys there.
    return {"IDNODE_DATABASE_URL": database_url, "IDNODE_DATA_DIR": str(tmp_path / "data")}


def ok(*args: str, env: dict[str, str], input: str | None = None) -> str:
    result = run_idnode(*args, env=env, input=input)
    assert result.returncode == 0, result.stderr
    return result.stdout


def fails(*args: str, env: dict[str, str], input: str | None = None) -> str:
    result = run_idnode(*args, env=env, input=input)
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("idnode: error: "), result.stderr
    return lines[0]


@pytest.fixture
def with_prefix(env: dict[str, str]) -> dict[str, str]:
    ok(
        "enterprise",
        "add",
        "--name",
        "盛泽示例丝绸",
        "--credit-code",
        MILL,
        "--contact",
        "ops@example.com",
        env=env,
    )
    ok("prefix", "add", "88.118.2", "--enterprise", MILL, env=env)
    return env


async def counts(url: str) -> tuple[int, int]:
    conn = await asyncpg.connect(url)
    try:
        return (
            await conn.fetchval("SELECT count(*) FROM handles"),
            await conn.fetchval("SELECT count(*) FROM handle_history"),
        )
    finally:
        await conn.close()


def test_version() -> None:
    result = run_idnode("--version")
    assert result.returncode == 0 and result.stdout.startswith("idnode ")


def test_migrate_is_idempotent(env: dict[str, str]) -> None:
    assert "applied 0001_initial" in ok("db", "migrate", env=env)
    assert "applied" not in ok("db", "migrate", env=env)


def test_enterprise_and_prefix_commands(with_prefix: dict[str, str]) -> None:
    env = with_prefix
    enterprises = json.loads(ok("enterprise", "list", env=env))
    assert [e["credit_code"] for e in enterprises] == [MILL]
    ok("prefix", "set-status", "88.118.2", "4", env=env)
    prefixes = json.loads(ok("prefix", "list", env=env))
    assert prefixes[0]["prefix"] == "88.118.2" and prefixes[0]["status_name"] == "awaiting review"
    assert "check character" in fails(
        "enterprise", "add", "--name", "x", "--credit-code", BAD_CHECK, env=env
    )
    assert "no enterprise" in fails(
        "prefix", "add", "88.118.3", "--enterprise", "91320509MA1ZZZZZZ0", env=env
    )
    assert "already registered" in fails("prefix", "add", "88.118.2", "--enterprise", MILL, env=env)


async def test_handle_put_get_list_delete(
    with_prefix: dict[str, str], tmp_path: Path, database_url: str
) -> None:
    env = with_prefix
    values = [
        {"index": 1, "type": "URL", "data": "https://example.com/roll/1"},
        {
            "index": 2000,
            "type": "fabricCode",
            "data": {"format": "string", "value": "11101111000000001"},
        },
        {
            "index": 3,
            "type": "BLOB",
            "data": {"format": "hex", "value": "00ff10"},
            "permissions": "1100",
        },
    ]
    f = tmp_path / "roll.json"
    f.write_text(json.dumps(values), encoding="utf-8")
    assert "created" in ok("handle", "put", "88.118.2/ROLL-1", "--file", str(f), env=env)

    got = json.loads(ok("handle", "get", "88.118.2/roll-1", env=env))  # case-insensitive lookup
    # CLI writes are signed like HTTP ones (node.signing.signer): HS_SIGNATURE at 400.
    assert [(v["index"], v["type"]) for v in got] == [
        (1, "URL"),
        (3, "BLOB"),
        (400, "HS_SIGNATURE"),
        (2000, "fabricCode"),
    ]
    assert (
        got[1]["data"] == {"format": "base64", "value": "AP8Q"} and got[1]["permissions"] == "1100"
    )
    assert all("timestamp" in v for v in got)

    # get prints what put takes: copy a record through a pipe.
    assert "created" in ok(
        "handle", "put", "88.118.2/ROLL-2", "-f", "-", env=env, input=json.dumps(got)
    )
    again = json.loads(ok("handle", "get", "88.118.2/ROLL-2", env=env))

    # The copy is re-signed for its own handle; everything else is the same.
    def unsigned(vs: list[dict[str, object]]) -> list[tuple[object, object]]:
        return [(v["index"], v["data"]) for v in vs if v["type"] != "HS_SIGNATURE"]

    assert unsigned(again) == unsigned(got)

    listing = json.loads(ok("handle", "list", "--prefix", "88.118.2", env=env))
    assert listing["totalCount"] == 2 and listing["handles"] == [
        "88.118.2/ROLL-1",
        "88.118.2/ROLL-2",
    ]

    ok("handle", "delete", "88.118.2/ROLL-2", env=env)
    assert "not found" in fails("handle", "get", "88.118.2/ROLL-2", env=env)
    history = json.loads(ok("handle", "history", "88.118.2/ROLL-2", "--json", env=env))
    assert [h["action"] for h in history] == ["create", "delete"]
    assert history[0]["actor"].startswith("cli")
    assert await counts(database_url) == (1, 3)


@pytest.mark.parametrize(
    "handle, body, message",
    [
        ("88.118.2", "[]", "no '/'"),
        ("/X", "[]", "empty prefix"),
        ("88.118.2/A\tB", "[]", "control character U+0009"),
        ("88.118.2/" + "x" * 1100, "[]", "longer than 1024 bytes"),
        ("88.999/X", '[{"index":1,"type":"URL","data":"x"}]', "prefix 88.999 is not registered"),
        ("88.118.2/X", "[{", "not valid JSON"),
        ("88.118.2/X", '[{"index":"one","type":"URL","data":"x"}]', "index"),
        ("88.118.2/X", '[{"index":1,"type":"URL","data":{"format":"nope","value":"x"}}]', "nope"),
        (
            "88.118.2/X",
            '[{"index":1,"type":"URL","data":"a"},{"index":1,"type":"URL","data":"b"}]',
            "1",
        ),
    ],
)
async def test_bad_input_is_refused_and_nothing_written(
    with_prefix: dict[str, str], database_url: str, handle: str, body: str, message: str
) -> None:
    line = fails("handle", "put", handle, "-f", "-", env=with_prefix, input=body)
    assert message in line
    assert await counts(database_url) == (0, 0)


def test_invalid_utf8_handle_argument(with_prefix: dict[str, str]) -> None:
    # A shell can pass bytes that are not UTF-8; Python maps them to surrogates.
    line = fails("handle", "get", "88.118.2/\udcff", env=with_prefix)
    assert "surrogate" in line or "UTF-8" in line


def test_settings_errors_are_one_line(env: dict[str, str]) -> None:
    result = run_idnode("settings", env={**env, "IDNODE_HTTP_PORT": "abc"})
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "idnode: error: invalid setting http_port (from IDNODE_HTTP_PORT): 'abc' is not an integer"
    )
