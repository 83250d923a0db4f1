"""``idnode serve --workers N``: a real supervisor, real worker processes, real PostgreSQL.

Worker processes are found through /proc (children of the supervisor running
``node.serving.supervisor``), not through the supervisor's own account of them.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from node.client.native import NativeClient
from node.serving.supervisor import SupervisorError, claim_ports, worker_flags
from node.settings import Settings, load_settings
from protocol.codes import ResponseCode
from registry.embedded import EmbeddedPostgres
from tests.node.process_support import READY, NodeProcess, run_idnode
from tests.node.serving.workers_support import DEADLINE_S, wait_until, workers_up

FREE = ["--admin-port", "0", "--handle-port", "0", "--http-port", "0"]
ROLL = "88.118.2/ROLL-2026-000123"  # a demo record (node.demo.dataset)


def worker_pids(supervisor: int) -> set[int]:
    """Live worker processes whose parent is ``supervisor``."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue  # ended while we looked
        # Fields after the parenthesised command name: state, ppid, ...
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == supervisor and state != "Z" and b"node.serving.worker" in cmdline:
            found.add(int(entry.name))
    return found


async def http_get(session: aiohttp.ClientSession, url: str, retried: list[str]) -> tuple[int, str]:
    """GET on a fresh connection. A connection the kernel queued on a listener that then
    closed (a worker leaving during a rolling restart) is reset: for an idempotent GET
    that is retried, and the retry recorded."""
    for _ in range(3):
        try:
            async with session.get(url) as resp:
                return resp.status, await resp.text()
        except aiohttp.ClientConnectionError as exc:
            retried.append(repr(exc))
    raise AssertionError(f"GET {url} failed three times: {retried[-3:]}")


async def resolves(handle_port: int) -> bool:
    # UDP with the client's own retries (about 0.5 s), then TCP: what Handle clients do.
    reply = await NativeClient("127.0.0.1", handle_port).resolve(ROLL)
    return reply.header.response_code == ResponseCode.SUCCESS


@dataclass
class Load:
    http: int = 0
    native: int = 0


async def keep_asking(
    http_port: int, handle_port: int, stop: asyncio.Event, load: Load, retried: list[str]
) -> None:
    url = f"http://127.0.0.1:{http_port}/api/handles/{ROLL}"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
        while not stop.is_set():
            status, _ = await http_get(session, url, retried)
            assert status == 200
            load.http += 1
            assert await resolves(handle_port)
            load.native += 1


async def test_workers_serve_restart_reload_and_stop(idnode_data_dir: Path) -> None:
    node = NodeProcess(
        ["--data-dir", str(idnode_data_dir), *FREE, "--demo", "--workers", "2"]
    ).start()
    assert node.proc is not None
    supervisor = node.proc.pid
    asking: asyncio.Task[None] | None = None
    try:
        # One ready line, the supervisor's: the workers' own are renamed.
        ready = [line for line in node.lines if READY.search(line)]
        assert len(ready) == 1 and "idnode.workers" in ready[0] and "workers=2" in ready[0], (
            node.output
        )
        http = re.search(r"http=(\d+)", ready[0])
        assert http is not None
        http_port = int(http[1])
        handle_port = node.ports["handle"]

        pids = worker_pids(supervisor)
        up = workers_up(node)
        assert len(pids) == 2 and pids == set(up), node.output
        assert sorted(index for index, _ in up.values()) == [0, 1]
        assert {admin for index, admin in up.values() if index == 0} == {node.ports["admin"]}
        async with aiohttp.ClientSession() as session:
            for _, admin in up.values():  # each worker answers on its own admin port
                async with session.get(f"http://127.0.0.1:{admin}/readyz") as resp:
                    assert resp.status == 200
            async with session.get(f"http://127.0.0.1:{http_port}/api/handles/{ROLL}") as resp:
                assert resp.status == 200 and "fabricCode" in await resp.text()
        assert await resolves(handle_port)

        # A worker killed with -9 is replaced, on the same admin port; service goes on.
        victim = min(pids)
        os.kill(victim, signal.SIGKILL)

        def replaced() -> bool:
            now = worker_pids(supervisor)
            return len(now) == 2 and victim not in now and now <= set(workers_up(node))

        await wait_until(replaced, "the killed worker's replacement")
        assert "was killed by SIGKILL" in node.output
        up = workers_up(node)
        (replacement,) = worker_pids(supervisor) - pids
        assert up[replacement] == up[victim]  # same index, same admin port
        assert await resolves(handle_port)

        # SIGHUP: rolling restart while clients keep asking; every request succeeds.
        before = worker_pids(supervisor)
        stop, load, retried = asyncio.Event(), Load(), []
        asking = asyncio.create_task(keep_asking(http_port, handle_port, stop, load, retried))
        await wait_until(lambda: load.http >= 5, "requests before the reload")
        node.proc.send_signal(signal.SIGHUP)
        at_hup = load.native
        # (asking.done(): a failed request ends the wait at once; awaiting it re-raises.)
        await wait_until(
            lambda: asking.done() or any("reload done" in line for line in node.lines), "the reload"
        )
        during = load.native - at_hup
        await wait_until(
            lambda: asking.done() or load.native >= at_hup + during + 5, "requests after it"
        )
        stop.set()
        await asking
        after = worker_pids(supervisor)
        assert len(after) == 2 and not after & before, node.output
        assert during > 10  # the reload was under load
        print(
            f"\nreload under load: {during} HTTP GET + native resolution pairs during it, "
            f"{len(retried)} GETs retried after a reset"
        )

        # SIGTERM: exit 0, no worker left, the embedded server stopped.
        workers = after
        assert node.signal(signal.SIGTERM) == 0, node.output
    finally:
        if asking is not None and not asking.done():
            asking.cancel()
        node.stop()
    assert "idnode stopped" in node.output
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)
    assert not (EmbeddedPostgres(idnode_data_dir).cluster_dir / "postmaster.pid").exists()
    assert "Traceback" not in node.output


def test_unusable_tls_file_stops_the_supervisor_before_anything_starts(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    missing = tmp_path / "missing.pem"
    env = {"IDNODE_TLS_CERT_FILE": str(missing), "IDNODE_TLS_KEY_FILE": str(missing)}
    result = run_idnode("serve", "--data-dir", str(data_dir), *FREE, "--workers", "2", env=env)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"idnode: error: tls_cert_file '{missing}' cannot be read: No such file or directory"
    )
    assert not data_dir.exists()  # neither locked nor a server started


def test_workers_that_keep_failing_to_start_stop_the_node(
    database_url: str, tmp_path: Path
) -> None:
    # Read by every worker at start (the record page's trust roots), not by the supervisor.
    env = {
        "IDNODE_DATABASE_URL": database_url,
        "IDNODE_TRUST_ROOT_FILE": str(tmp_path / "missing.pem"),
    }
    node = NodeProcess(["--data-dir", str(tmp_path), *FREE, "--workers", "2"], env=env)
    try:
        code = node.start_expecting_exit(timeout=DEADLINE_S)
    finally:
        node.stop()
    assert code == 1, node.output
    last = node.lines[-1].strip()
    assert re.fullmatch(
        rf"idnode: error: worker \d failed to start 3 times in a row, giving up: "
        rf"cannot read {re.escape(str(tmp_path))}/missing.pem: No such file or directory",
        last,
    ), node.output
    assert not READY.search(node.output)
    assert "Traceback" not in node.output


# -- the supervisor's pieces, in process ------------------------------------------------


def test_worker_flags_give_back_the_same_settings(tmp_path: Path) -> None:
    settings = load_settings(
        env={},
        flags={
            "data_dir": str(tmp_path),
            "database_url": "postgresql://idnode@/idnode?host=/tmp&port=5432",
            "prefixes": "88.118,88.119",
            "server_admins": "300:88.118/ADMIN",
            "workers": 3,
            "site_key_file": str(tmp_path / "site.pem"),
            "shutdown_timeout_s": 2.5,
            "demo": True,
        },
    )
    assert load_settings(env={}, flags=worker_flags(settings)) == settings


def _settings(tmp_path: Path, **flags: object) -> Settings:
    return load_settings(env={}, flags={"data_dir": str(tmp_path), **flags})


def test_claim_ports_picks_distinct_free_ports(tmp_path: Path) -> None:
    ports = claim_ports(_settings(tmp_path, handle_port=0, http_port=0, admin_port=0, workers=3))
    assert len({ports.handle, ports.http, *ports.admin}) == 5 and len(ports.admin) == 3
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, socket.socket() as tcp:
        udp.bind(("127.0.0.1", ports.handle))  # free for both UDP and TCP
        tcp.bind(("127.0.0.1", ports.handle))


def test_claim_ports_refuses_a_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        busy = listener.getsockname()[1]
        with pytest.raises(SupervisorError, match=f"HTTP port {busy} on 127.0.0.1 is in use"):
            claim_ports(_settings(tmp_path, handle_port=0, http_port=busy, admin_port=0, workers=2))


def test_claim_ports_gives_worker_i_admin_port_plus_i(tmp_path: Path) -> None:
    for _ in range(20):  # a base port whose successor is free too
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        try:
            ports = claim_ports(
                _settings(tmp_path, handle_port=0, http_port=0, admin_port=base, workers=2)
            )
        except SupervisorError as exc:
            if "in use" not in str(exc):
                raise
            continue
        assert ports.admin == (base, base + 1)
        return
    raise AssertionError("no two consecutive free ports found")
