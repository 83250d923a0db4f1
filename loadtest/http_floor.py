"""The HTTP floor: a bare aiohttp handler returning fixed bytes, on the loop the node
uses. Prints ``floor ready port=N`` and serves until killed or --lifetime-s passes."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from aiohttp import web


async def main(body: bytes, lifetime_s: float) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    print(f"floor ready port={port}", flush=True)
    await asyncio.sleep(lifetime_s)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--body-file", type=Path, required=True)
    parser.add_argument("--lifetime-s", type=float, default=600)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from node.runtime.loop import install_fast_loop

    install_fast_loop()
    asyncio.run(main(args.body_file.read_bytes(), args.lifetime_s))
