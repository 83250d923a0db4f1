"""Running the real ``idnode`` command in a subprocess, as an operator would."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from protocol.creditcode import check_character

IDNODE = [sys.executable, "-m", "node.cli"]
REPO = Path(__file__).resolve().parents[2]
# An enterprise the CLI tests register (a valid unified social credit code).
MILL = "91320509MA1MXLL00" + check_character("91320509MA1MXLL00")
READY = re.compile(r"ready: .*admin=(?P<host>[^ ]+):(?P<admin>\d+) handle=(?P<handle>\d+)")


def idnode_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDNODE_")}
    env["PYTHONPATH"] = str(REPO)
    env.update(extra or {})
    return env


def run_idnode(
    *args: str, env: Mapping[str, str] | None = None, input: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*IDNODE, *args],
        env=idnode_env(env),
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )


@dataclass
class NodeProcess:
    """``idnode serve`` in the background; its stderr is collected line by line."""

    args: Sequence[str]
    env: Mapping[str, str] | None = None
    proc: subprocess.Popen[str] | None = None
    lines: list[str] = field(default_factory=list)
    ports: dict[str, int] = field(default_factory=dict)
    _ready: threading.Event = field(default_factory=threading.Event)
    _ended: threading.Event = field(default_factory=threading.Event)

    def start(self, timeout: float = 60) -> NodeProcess:
        self.proc = subprocess.Popen(
            [*IDNODE, "serve", *self.args],
            env=idnode_env(self.env),
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()
        # Wait for the ready line or the process ending, whichever comes first.
        self._ready.wait(timeout)
        if not self.ready:
            raise AssertionError("node did not become ready:\n" + self.output)
        return self

    def start_expecting_exit(self, timeout: float = 60) -> int:
        self.proc = subprocess.Popen(
            [*IDNODE, "serve", *self.args],
            env=idnode_env(self.env),
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()
        return self.proc.wait(timeout)

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            m = READY.search(line)
            if m:
                self.ports["admin"] = int(m.group("admin"))
                self.ports["handle"] = int(m.group("handle"))
                self._ready.set()
        self.proc.stderr.close()
        self._ended.set()
        self._ready.set()  # unblock start(); it checks the ports

    @property
    def output(self) -> str:
        return "".join(self.lines)

    @property
    def ready(self) -> bool:
        return "admin" in self.ports

    def signal(self, sig: int) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        code = self.proc.wait(60)
        self._ended.wait(10)
        return code

    def kill9(self) -> None:
        self.signal(signal.SIGKILL)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.signal(signal.SIGTERM)
