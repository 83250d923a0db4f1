"""``idnode serve`` on the embedded default: a real process, its own PostgreSQL."""

from __future__ import annotations

import json
import signal
import urllib.request
from pathlib import Path

from registry.embedded import EmbeddedPostgres

from .proc import NodeProcess, run_idnode

FREE = ["--admin-port", "0", "--handle-port", "0", "--http-port", "0"]


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_demo_node_serves_survives_kill_9_and_refuses_a_twin(idnode_data_dir: Path) -> None:
    d = ["--data-dir", str(idnode_data_dir)]
    node = NodeProcess([*d, *FREE, "--demo"]).start()
    try:
        admin = node.ports["admin"]
        assert get(admin, "/healthz") == (200, '{"status": "ok"}')
        assert get(admin, "/readyz")[0] == 200
        status, metrics = get(admin, "/metrics")
        assert status == 200 and 'idnode_ready 1.0' in metrics

        # The CLI reaches the running node's database through its socket.
        rec = run_idnode("handle", "get", "88.118.2/ROLL-2026-000123", *d)
        assert rec.returncode == 0, rec.stderr
        assert any(v["type"] == "fabricCode" for v in json.loads(rec.stdout))
        put = run_idnode(
            "handle", "put", "88.118.2/KILL-TEST", "-f", "-", *d,
            input='[{"index":1,"type":"URL","data":"https://example.com/before-kill"}]',
        )
        assert put.returncode == 0, put.stderr

        twin = NodeProcess([*d, *FREE])
        code = twin.start_expecting_exit()
        assert code != 0
        assert "already serving data dir" in twin.output and "Traceback" not in twin.output

        node.kill9()
    finally:
        node.stop()

    # A new node adopts the PostgreSQL the killed one left behind; the write survived.
    node = NodeProcess([*d, *FREE]).start()
    try:
        rec = run_idnode("handle", "get", "88.118.2/KILL-TEST", *d)
        assert rec.returncode == 0, rec.stderr
        assert json.loads(rec.stdout)[0]["data"]["value"] == "https://example.com/before-kill"
        assert node.signal(signal.SIGTERM) == 0
    finally:
        node.stop()
    assert "idnode stopped" in node.output
    assert not EmbeddedPostgres(idnode_data_dir).is_running()  # stopped with the node


def test_cli_starts_and_stops_the_embedded_server_when_no_node_runs(idnode_data_dir: Path) -> None:
    d = ["--data-dir", str(idnode_data_dir)]
    result = run_idnode("db", "migrate", *d)
    assert result.returncode == 0, result.stderr
    assert "schema at version" in result.stdout
    assert not EmbeddedPostgres(idnode_data_dir).is_running()


def test_bad_setting_stops_serve_with_one_line(idnode_data_dir: Path) -> None:
    result = run_idnode("serve", "--data-dir", str(idnode_data_dir), "--admin-port", "99999")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "idnode: error: invalid setting admin_port (from --admin-port): 99999 is not a port number "
        "(0-65535; 0 picks a free port)"
    )
