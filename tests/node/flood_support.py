"""A UDP flooder in a process of its own, so that its sending competes with the node
as a remote attacker's would, not for the test process's GIL.

``python -m tests.node.flood_support HOST PORT BIND RATE HANDLE...`` sends certified
(CERT) resolution requests for the handles in turn, each with a new request id, from a
socket bound to BIND, RATE datagrams a second (0: as fast as it can), until its
standard input closes; it then prints the number of datagrams sent. ``Flooder`` runs
it and stops it.

A rate, because an unpaced sender on the same small machine takes a whole core from
the node: what is then measured is the operating system's scheduler and the socket
buffer, not the node. Pacing is the sender's own business (a load generator keeping
its schedule), not a test waiting for a condition.
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
CERT_FLAGS = OpFlag.CERT | OpFlag.RECU | OpFlag.CACR | OpFlag.PUBL
BATCH = 32  # datagrams sent between looks at the clock
_U32 = struct.Struct(">I")


def cert_request(handle: str, *, version: tuple[int, int] = (2, 10), request_id: int = 1) -> bytes:
    """A certified resolution request for ``handle`` as the reference client sends it."""
    major, minor = version
    env = Envelope(
        major, minor, suggested_major=major, suggested_minor=minor, request_id=request_id
    )
    header = Header(OpCode.RESOLUTION, flags=CERT_FLAGS, expiration=0)
    return encode(Message(env, header, ResolutionRequest(handle, (), ())))


def flood(
    host: str, port: int, bind: str, rate: float, handles: list[str], stop: threading.Event
) -> int:
    requests = [bytearray(cert_request(h)) for h in handles]
    sent = 0
    started = time.monotonic()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((bind, 0))
        target = (host, port)
        while not stop.is_set():
            try:
                for _ in range(BATCH):
                    data = requests[sent % len(requests)]
                    _U32.pack_into(data, 8, (sent & 0x7FFFFFFF) or 1)  # a new request id each
                    sent += 1
                    sock.sendto(data, target)
            except OSError:
                continue  # ENOBUFS and the like: a flooder does not care
            if rate:
                ahead = started + sent / rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
    return sent


class Flooder:
    """The flooder process: ``start()``, then ``stop()`` returns how many it sent."""

    def __init__(self, host: str, port: int, bind: str, rate: float, handles: list[str]):
        self.args = [host, str(port), bind, str(rate), *handles]
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> Flooder:
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.node.flood_support", *self.args],
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
    host, port, bind, rate, *handles = argv
    stop = threading.Event()

    def wait_for_eof() -> None:
        sys.stdin.read()
        stop.set()

    threading.Thread(target=wait_for_eof, daemon=True).start()
    print(flood(host, int(port), bind, float(rate), handles, stop), flush=True)


if __name__ == "__main__":
    _main(sys.argv[1:])
