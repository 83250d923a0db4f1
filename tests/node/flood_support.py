"""UDP flooders in a process of their own, so that their sending competes with the node
as a remote attacker's would, not for the test process's GIL.

``python -m tests.node.flood_support KIND HOST PORT BIND RATE ARG...`` sends, from a
socket bound to BIND, RATE datagrams a second (0: as fast as it can), until its standard
input closes, then prints the number of datagrams sent. Every datagram has a new request
id. KIND is

- ``cert``: certified (CERT) resolution requests for the handles ARG... in turn;
- ``miss``: resolution requests for ``ARG/FLOOD-0000000001``, ``-0000000002``... (each
  new, so none is ever cached), fire-and-forget.

``Flooder`` / ``MissFlooder`` run one and stop it.

A rate, because an unpaced sender on the same small machine takes a whole core from
the node: what is then measured is the operating system's scheduler and the socket
buffer (the kernel drops what the node has no time to read, the polite client's
datagrams with the rest), not the node. Pacing is the sender's own business (a load
generator keeping its schedule), not a test waiting for a condition.
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from protocol.bodies import ResolutionRequest
from protocol.codes import OpCode, OpFlag
from protocol.message import Envelope, Header, Message, encode

REPO = Path(__file__).resolve().parents[2]
CERT_FLAGS = OpFlag.CERT | OpFlag.RECU | OpFlag.CACR | OpFlag.PUBL
DIGITS = 10
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


def miss_request(prefix: str) -> tuple[bytearray, int]:
    """A resolution request for ``PREFIX/FLOOD-<digits>`` and where its digits start."""
    handle = f"{prefix}/FLOOD-{0:0{DIGITS}d}"
    flags = OpFlag.RECU | OpFlag.CACR | OpFlag.PUBL
    request = Message(
        Envelope(request_id=1), Header(OpCode.RESOLUTION, flags=flags), ResolutionRequest(handle)
    )
    data = bytearray(encode(request))
    return data, data.index(handle.encode()) + len(handle) - DIGITS


def cert_datagrams(handles: list[str]) -> Callable[[int], bytearray]:
    requests = [bytearray(cert_request(h)) for h in handles]
    return lambda n: requests[n % len(requests)]


def miss_datagrams(prefix: str) -> Callable[[int], bytearray]:
    data, at = miss_request(prefix)

    def nth(n: int) -> bytearray:
        data[at : at + DIGITS] = b"%010d" % n
        return data

    return nth


def flood(
    host: str,
    port: int,
    bind: str,
    rate: float,
    datagram: Callable[[int], bytearray],
    stop: threading.Event,
) -> int:
    sent = 0
    started = time.monotonic()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((bind, 0))
        target = (host, port)
        while not stop.is_set():
            for _ in range(BATCH):
                sent += 1
                data = datagram(sent)
                _U32.pack_into(data, 8, sent & 0x7FFFFFFF or 1)  # a new request id each
                try:  # noqa: SIM105 (suppress() would cost a context manager per datagram)
                    sock.sendto(data, target)
                except OSError:
                    pass  # ENOBUFS and the like: a flooder does not care
            if rate:
                ahead = started + sent / rate - time.monotonic()
                if ahead > 0:
                    stop.wait(ahead)
    return sent


class _Process:
    """The flooder process: ``start()``, then ``stop()`` returns how many it sent."""

    kind = ""

    def __init__(self, host: str, port: int, bind: str, rate: float, *args: str):
        self.args = [self.kind, host, str(port), bind, str(rate), *args]
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> _Process:
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


class Flooder(_Process):
    """Certified requests for existing handles: ``Flooder(host, port, bind, rate, handles)``."""

    kind = "cert"

    def __init__(self, host: str, port: int, bind: str, rate: float, handles: list[str]):
        super().__init__(host, port, bind, rate, *handles)


class MissFlooder(_Process):
    """Requests for new handles under ``prefix``, never cached."""

    kind = "miss"


def _main(argv: list[str]) -> None:
    kind, host, port, bind, rate, *args = argv
    datagram = cert_datagrams(args) if kind == "cert" else miss_datagrams(args[0])
    stop = threading.Event()

    def wait_for_eof() -> None:
        sys.stdin.read()
        stop.set()

    threading.Thread(target=wait_for_eof, daemon=True).start()
    print(flood(host, int(port), bind, float(rate), datagram, stop), flush=True)


if __name__ == "__main__":
    _main(sys.argv[1:])
