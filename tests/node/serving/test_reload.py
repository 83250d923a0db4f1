"""A running ``idnode serve`` picks up a rotated signing key on SIGHUP, without a restart."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import orjson

from node.client.native import NativeClient
from tests.node.process_support import NodeProcess, run_idnode

FREE = ["--admin-port", "0", "--handle-port", "0", "--http-port", "0"]


def wait_for_line(node: NodeProcess, text: str, timeout_s: float = 20.0) -> bool:
    """Wait on the node's own log for ``text`` (a condition, bounded; not a sleep)."""
    seen = threading.Event()
    deadline = threading.Timer(timeout_s, seen.set)
    deadline.start()
    try:
        while not seen.is_set():
            if any(text in line for line in node.lines):
                return True
            seen.wait(0.05)
        return any(text in line for line in node.lines)
    finally:
        deadline.cancel()


async def test_sighup_reloads_rotated_keys(database_url: str, tmp_path: Path) -> None:
    env = {"IDNODE_DATABASE_URL": database_url}
    node = NodeProcess(["--data-dir", str(tmp_path), *FREE, "--demo"], env=env).start()
    try:
        client = NativeClient("127.0.0.1", node.ports["handle"])
        before = await client.resolve("0.NA/88.118", types=("HS_CERT",))
        assert {v.index for v in before.body.values} == {400, 401}  # type: ignore[union-attr]

        rotated = run_idnode("keys", "rotate", "--data-dir", str(tmp_path), env=env)
        assert rotated.returncode == 0, rotated.stderr
        assert orjson.loads(rotated.stdout)["certIndex"] == 402

        node.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        kid = orjson.loads(rotated.stdout)["kid"]
        # The log line itself (a traceback quoting this source line once passed for it).
        assert wait_for_line(node, f"signing keys reloaded: new writes sign with key {kid}"), (
            node.output
        )
        assert "Traceback" not in node.output and "exception" not in node.output.lower()
        after = await client.resolve("0.NA/88.118", types=("HS_CERT",))
        # The new key's certificate is published; the old one stays for old signatures.
        assert {v.index for v in after.body.values} == {400, 401, 402}  # type: ignore[union-attr]
        assert node.proc.poll() is None  # still serving  # type: ignore[union-attr]
    finally:
        node.stop()
