"""``idnode upstream`` as operators run it (the real command in a subprocess): the
secondary prints its identity, the top's operator admits it, the secondary docks and
says so in ``status``; admitting again keeps what the secondary published; ``revoke``."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

from node.client.native import NativeClient
from protocol.codes import ResponseCode
from tests.conftest import scratch_database
from tests.node.process_support import run_idnode
from tests.node.topology_support import TEXTILE, TOP, Member, member_settings


async def idnode(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(run_idnode, *args, env=env)


def env_of(member: Member) -> dict[str, str]:
    s = member.settings
    assert s.database_url is not None
    return {"IDNODE_DATABASE_URL": s.database_url, "IDNODE_DATA_DIR": str(s.data_dir)}


async def test_identity_admit_dock_status_revoke(pg_server: str, tmp_path: Path) -> None:
    async with scratch_database(pg_server) as top_url, scratch_database(pg_server) as tex_url:
        top = Member(TOP, member_settings(TOP, top_url, tmp_path))
        await top.start()
        try:
            upstream = f"127.0.0.1:{top.up.handle_port}"
            textile = Member(
                TEXTILE,
                member_settings(TEXTILE, tex_url, tmp_path, upstream=upstream, trust_root_file=""),
            )
            pem = await idnode("upstream", "identity", env=env_of(textile))
            assert pem.returncode == 0 and pem.stdout.startswith("-----BEGIN PUBLIC KEY-----")
            key_file = tmp_path / "textile.pem"
            key_file.write_text(pem.stdout)

            admitted = await idnode(
                "upstream", "admit", "88.118", "--pubkey", str(key_file), env=env_of(top)
            )
            assert admitted.returncode == 0, admitted.stderr
            assert "0.NA/88.118 admitted" in admitted.stdout

            await textile.start()
            try:
                await _until_docked(textile, "88.118")
                status = await idnode("upstream", "status", env=env_of(textile))
                report = json.loads(status.stdout)
                states = {p["prefix"]: p["state"] for p in report["prefixes"]}
                assert states["88.118"] == "docked" and report["outbox depth"] == 0
            finally:
                await textile.stop()

            # Admitted again (a new key, say): what the textile node published stays.
            again = await idnode(
                "upstream", "admit", "0.NA/88.118", "--pubkey", str(key_file), env=env_of(top)
            )
            assert "admitted again" in again.stdout
            client = NativeClient("127.0.0.1", top.up.handle_port or 0)
            kept = await client.resolve("0.NA/88.118", types=("HS_SITE",))
            assert kept.header.response_code == ResponseCode.SUCCESS

            revoked = await idnode("upstream", "revoke", "88.118", env=env_of(top))
            assert revoked.returncode == 0 and "revoked" in revoked.stdout
            gone = await client.resolve("0.NA/88.118")
            assert gone.header.response_code != ResponseCode.SUCCESS

            nowhere = await idnode(
                "upstream", "admit", "86.1", "--pubkey", str(key_file), env=env_of(top)
            )
            assert nowhere.returncode != 0 and "Traceback" not in nowhere.stderr
            assert "register the top-level's own prefix first" in nowhere.stderr
        finally:
            await top.stop()


async def _until_docked(member: Member, prefix: str) -> None:
    docking = member.up.docking
    assert docking is not None

    async def wait() -> None:
        while {r.prefix: r.state for r in await docking.outbox.rows()}.get(prefix) != "docked":
            docking.wake()
            async with docking.changed:
                await docking.changed.wait()

    await asyncio.wait_for(wait(), 60)
