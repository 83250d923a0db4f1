"""``idnode siteinfo`` and ``idnode resolve --native`` against a real node process."""

from __future__ import annotations

import json
from pathlib import Path

from protocol.keys import decode_public_key
from protocol.structured import SiteInfo
from tests.node.process_support import NodeProcess, run_idnode


def test_siteinfo_prints_json_and_writes_the_binary_file(tmp_path: Path) -> None:
    out = tmp_path / "siteinfo.bin"
    args = ["--data-dir", str(tmp_path), "--handle-port", "2651"]
    result = run_idnode("siteinfo", "--out", str(out), *args)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    site = SiteInfo.from_wire(out.read_bytes())
    assert shown["serialNumber"] == site.serial == 1
    (server,) = site.servers
    assert str(server.ip) == "127.0.0.1" == shown["servers"][0]["address"]
    assert {(i.protocol, i.port) for i in server.interfaces} >= {(0, 2651), (1, 2651)}
    assert decode_public_key(server.public_key).key_size == 2048  # type: ignore[union-attr]
    assert (tmp_path / "site_key.pem").stat().st_mode & 0o077 == 0
    # The key is made once: a second run advertises the same key.
    again = run_idnode("siteinfo", *args)
    assert json.loads(again.stdout)["servers"][0]["publicKey"] == shown["servers"][0]["publicKey"]


def test_resolve_native_against_a_running_node(database_url: str, tmp_path: Path) -> None:
    env = {"IDNODE_DATABASE_URL": database_url}
    node = NodeProcess(
        ["--data-dir", str(tmp_path), "--admin-port", "0", "--handle-port", "0", "--demo"], env=env
    ).start()
    try:
        server = f"127.0.0.1:{node.ports['handle']}"
        hit = run_idnode(
            "resolve", "88.118.2/roll-2026-000123", "--server", server, "--type", "URL"
        )
        assert hit.returncode == 0, hit.stderr
        body = json.loads(hit.stdout)
        assert body["responseCode"] == 1 and body["handle"] == "88.118.2/roll-2026-000123"
        assert [v["type"] for v in body["values"]] == ["URL"]

        tcp = run_idnode(
            "resolve", "88.118.2/ROLL-2026-000123", "--server", server, "--tcp", "--index", "1"
        )
        assert tcp.returncode == 0 and json.loads(tcp.stdout)["values"][0]["index"] == 1

        miss = run_idnode("resolve", "99.1/X", "--server", server)
        assert miss.returncode == 1
        assert json.loads(miss.stdout)["responseCode"] == 301
    finally:
        node.stop()

    gone = run_idnode("resolve", "88.118.2/X", "--server", server, "--timeout", "1")
    assert gone.returncode == 1 and gone.stderr.startswith("idnode: error:")
