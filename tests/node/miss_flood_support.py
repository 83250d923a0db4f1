"""A flood of cache misses from a process of its own (so its sending competes with the
node for the CPU as a remote attacker's would, not for the test process's GIL).

``python -m tests.node.miss_flood_support HOST PORT BIND RATE PREFIX`` sends
resolution requests for handles ``PREFIX/FLOOD-0000000001``, ``-0000000002``... (each
new, so none is ever cached), fire-and-forget, from a socket bound to BIND, RATE
datagrams a second (0: as fast as it can), until its standard input closes; it then
prints the number of datagrams sent. ``MissFlooder`` runs it and stops it.

A rate, because an unpaced sender on the same small machine takes a whole core from
the node: what is then measured is the operating system's scheduler and the socket
buffer (the kernel drops what the node has no time to read, the polite client's
datagrams with the rest), not the node's fairness. Pacing is the sender's own business
(a load generator keeping its schedule), not a test waiting for a condition.
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

from protocol.bodies import ResolutionRequest
from protocol.codes import OpCode, OpFlag
from protocol.message import Envelope, Header, Message, encode

REPO = Path(__file__).resolve().parents[2]
DIGITS = 10
BATCH = 64  # datagrams between looks at the clock
_U32 = struct.Struct(">I")


def miss_request(prefix: str) -> tuple[bytearray, int]:
    """A resolution request for ``PREFIX/FLOOD-<digits>`` and where its digits start."""
    handle = f"{prefix}/FLOOD-{0:0{DIGITS}d}"
    flags = OpFlag.RECU | OpFlag.CACR | OpFlag.PUBL
    data = bytearray(
        encode(
            Message(
                Envelope(request_id=1),
                Header(OpCode.RESOLUTION, flags=flags),
                ResolutionRequest(handle),
            )
        )
    )
    return data, data.index(handle.encode()) + len(handle) - DIGITS


def flood(host: str, port: int, bind: str, rate: float, prefix: str, stop: threading.Event) -> int:
    data, at = miss_request(prefix)
    sent = 0
    started = time.monotonic()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((bind, 0))
        target = (host, port)
        while not stop.is_set():
            for _ in range(BATCH):
                sent += 1
                data[at : at + DIGITS] = b"%010d" % sent
                _U32.pack_into(data, 8, sent & 0x7FFFFFFF or 1)
                try:  # noqa: SIM105 (suppress() would cost a context manager per datagram)
                    sock.sendto(data, target)
                except OSError:
                    pass  # ENOBUFS and the like: a flooder does not care
            if rate:
                ahead = started + sent / rate - time.monotonic()
                if ahead > 0:
                    stop.wait(ahead)
    return sent


class MissFlooder:
    """The flooder process: ``start()``, then ``stop()`` returns how many it sent."""

    def __init__(self, host: str, port: int, bind: str, rate: float, prefix: str):
        self.args = [host, str(port), bind, str(rate), prefix]
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> MissFlooder:
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.node.miss_flood_support", *self.args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env=env,
        )
        return self

    def stop(self) -> int:
        proc = self.proc
        if proc is None:
            return 0
        try:
            out, _ = proc.communicate(input="", timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
        return int(out.strip() or 0)


def _main(argv: list[str]) -> None:
    host, port, bind, rate, prefix = argv
    stop = threading.Event()

    def wait_for_eof() -> None:
        sys.stdin.read()
        stop.set()

    threading.Thread(target=wait_for_eof, daemon=True).start()
    print(flood(host, int(port), bind, float(rate), prefix, stop), flush=True)


if __name__ == "__main__":
    _main(sys.argv[1:])
