"""A bare asyncio UDP echo server: the floor the native UDP front is measured against.

It answers every datagram with the datagram itself: no decoding, no task, no registry,
so udpblast driving it measures what one Python process on this loop can do per
packet at all (docs/figures.md: ~140k replies/s under uvloop on this machine class). It uses
uvloop when installed, exactly as ``node.runtime.loop.install_fast_loop`` does for the node,
so the two are compared on the same loop implementation.

    python loadtest/udp_echo.py [--host 127.0.0.1] [--port 0] [--lifetime-s 900]

Prints ``ready PORT loop=KIND`` on stdout once bound; stops on SIGINT/SIGTERM or when
its lifetime ends, so a forgotten echo server cannot outlive a benchmark for long.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys


class Echo(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(data, addr)


def install_fast_loop() -> str:
    # Same choice as node.runtime.loop.install_fast_loop, kept inline so the floor imports
    # nothing of the project.
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


async def serve(host: str, port: int, lifetime_s: float, loop_kind: str) -> None:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(Echo, local_addr=(host, port))
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    bound = transport.get_extra_info("sockname")[1]
    print(f"ready {bound} loop={loop_kind}", flush=True)
    try:
        await asyncio.wait_for(stop.wait(), lifetime_s)
    except TimeoutError:
        print(f"lifetime of {lifetime_s:.0f} s over, stopping", file=sys.stderr)
    finally:
        transport.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--lifetime-s", type=float, default=900.0, help="exit after this long")
    args = parser.parse_args()
    kind = install_fast_loop()
    asyncio.run(serve(args.host, args.port, args.lifetime_s, kind))
    return 0


if __name__ == "__main__":
    sys.exit(main())
