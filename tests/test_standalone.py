"""The repository stands alone: a copy of the checkout, anywhere, collects every test.

A user clones the project into a directory of their own; nothing beside it exists.
The suite copies the tracked files into an empty temporary directory and collects the
tests there, with no ``IDNODE_*`` settings in the environment, and checks that no
tracked file reaches for a path outside the repository.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# A sibling directory or an absolute path of the machine the project was written on.
OUTSIDE = re.compile(r"\.\./shared|/work/(shared|main)\b")


def tracked_files() -> list[str]:
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True, timeout=30
        ).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"not a git checkout ({exc}): nothing to copy")
    return [name for name in out.decode().split("\0") if name]


def test_no_tracked_file_reaches_outside_the_repository() -> None:
    offenders = []
    for name in tracked_files():
        path = REPO / name
        if path.suffix not in {".py", ".c", ".toml", ".md", ".yaml", ".yml", ".cfg", ".txt", ""}:
            continue
        if name.startswith("tests/vectors/"):
            continue  # recorded captures: their comments are data
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, IsADirectoryError):
            continue
        offenders += [f"{name}: {m.group(0)}" for m in OUTSIDE.finditer(text)]
    assert not offenders, offenders


def test_a_copy_of_the_checkout_collects_every_test(tmp_path: Path) -> None:
    copy = tmp_path / "clone"
    for name in tracked_files():
        target = copy / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target)
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDNODE_")}
    env.pop("PYTHONPATH", None)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    collected = re.search(r"(\d+) tests? collected", result.stdout)
    assert collected and int(collected.group(1)) > 100, result.stdout[-2000:]
