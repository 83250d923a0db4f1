"""The HTTP miss floor: a bare aiohttp handler that reads the asked-for handle's row by
primary key (one asyncpg query per request, as a node without a cache or batching
would) and returns its stored bytes; on the loop the node uses. Prints
``floor ready port=N`` and serves until killed or --lifetime-s passes."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import asyncpg
from aiohttp import web

PATH_PREFIX = "/api/handles/"


async def main(dsn: str, lifetime_s: float) -> None:
    from protocol.handle import normalise
    from registry.connect import RegistryConnection
    from registry.queries import q

    # The node's pool: same sizes, same connection class (no reset query per release).
    pool = await asyncpg.create_pool(
        dsn, min_size=2, max_size=10, connection_class=RegistryConnection
    )
    assert pool is not None
    query = q("get_handle_raw")

    async def handler(request: web.Request) -> web.Response:
        key = normalise(request.path[len(PATH_PREFIX) :])
        row = await pool.fetchrow(query, key)
        if row is None:
            return web.Response(status=404)
        return web.Response(body=row[1], content_type="application/octet-stream")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    print(f"floor ready port={port}", flush=True)
    await asyncio.sleep(lifetime_s)
    await pool.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--lifetime-s", type=float, default=600)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from node.runtime.loop import install_fast_loop

    install_fast_loop()
    asyncio.run(main(args.database_url, args.lifetime_s))
