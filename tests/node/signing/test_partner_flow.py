"""The README's partner flow, run exactly as written: the operator exports the trust root,
the partner verifies a record against it. (It once printed two keys, the signing key
first, and ``verify --root`` trusted the wrong one: "NOT VALID (unknown root)".)"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.node.process_support import REPO, NodeProcess, idnode_env

FREE = ["--admin-port", "0", "--handle-port", "0", "--http-port", "0"]


def readme_block(after: str) -> list[str]:
    """The commands of the first ``sh`` block after the line containing ``after``."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index(after)
    block = re.search(r"```sh\n(.*?)```", text[start:], re.S)
    assert block is not None, f"no sh block after {after!r} in README.md"
    return [line.strip() for line in block.group(1).splitlines() if line.strip()]


def test_partner_verifies_with_the_exported_root(database_url: str, tmp_path: Path) -> None:
    commands = readme_block("**Verifying as a partner.**")
    assert commands[0].startswith("idnode keys export-public") and commands[1].startswith(
        "idnode verify"
    )
    data = tmp_path / "node"
    env = {"IDNODE_DATABASE_URL": database_url, "IDNODE_DATA_DIR": str(data)}
    node = NodeProcess([*FREE, "--demo"], env=env).start()
    try:
        env["IDNODE_HANDLE_PORT"] = str(node.ports["handle"])  # where the default --server points
        work = tmp_path / "partner"
        work.mkdir()
        shell_env = idnode_env(env)
        # `idnode` as the installed entry point would run it.
        shell_env["PATH"] = f"{_shim(tmp_path)}{os.pathsep}{shell_env.get('PATH', '')}"
        for command in commands:
            result = subprocess.run(
                command,
                shell=True,
                cwd=work,
                env=shell_env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert result.returncode == 0, f"{command}\n{result.stdout}{result.stderr}"
        assert (work / "root.pem").read_text().count("BEGIN PUBLIC KEY") == 1
        assert ": VALID, signed by 400:0.NA/88.118" in result.stdout
    finally:
        node.stop()


def _shim(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    shim = bin_dir / "idnode"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m node.cli "$@"\n')
    shim.chmod(0o755)
    return bin_dir
