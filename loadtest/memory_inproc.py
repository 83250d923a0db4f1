"""The record cache's memory, in process: N records cached the way the node caches
them, against the resident set size they cause and the cache's own estimate.

    .venv/bin/python -m loadtest.memory_inproc                  # 200k records of 573 B
    .venv/bin/python -m loadtest.memory_inproc --records 1000000 --json

Row 5 of ``loadtest.cache_bench`` measures a whole node filled over UDP from the 1M
dataset (minutes); this measures the same structures in seconds. Each record goes
through the steps a native UDP miss takes in the node: the request's shape
(``protocol.replycache``), ``RecordCache.get`` (one read of the row, the entry stored),
the reply built and encoded from the decoded values (``protocol.negotiate.build_reply``,
as ``node.fronts.native.handler`` builds it for an anonymous request), and the reply
kept against its entry (``NativeReply``, ``RecordCache.add_reply``). Rows are the
benchmark dataset's textile rolls (``loadtest.rolls``, 8 fields: 573 bytes of values),
read from a dict in place of the registry: what is measured is what the cache keeps.

Printed: RSS before and after, per record, the cache's estimate (``cache.bytes``) and
how far it is from the RSS it caused. ``--json`` prints one object instead.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable as a plain script

from loadtest.bulkload import DEFAULT_FIELDS
from loadtest.native_udp import resolution_request
from loadtest.rolls import RollRecords, roll_handle
from node.fronts.native.handler import NativeReply
from node.resolution.cache.records import CachePolicy, RecordCache
from protocol.bodies import ResolutionReply
from protocol.codes import ResponseCode
from protocol.handle import normalise
from protocol.message import decode, encode
from protocol.negotiate import build_reply
from protocol.replycache import resolution_shape
from registry.rows import RawRecord

MiB = 1 << 20
SITE_SERIAL = 1


def rss() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


async def fill(records: int, fields: int) -> dict[str, float]:
    rolls = RollRecords(fields, int(time.time()))
    # The handle each key names (as the registry would answer it).
    spelled = {normalise(roll_handle(n)): n for n in range(records)}

    async def read(key: str) -> RawRecord | None:
        n = spelled.get(key)
        return None if n is None else RawRecord(roll_handle(n), rolls.wire(n), 1)

    cache = RecordCache(read, CachePolicy(max_entries=2 * records, max_bytes=1 << 40))
    cache.set_coherent(True)
    replies = cache.reply_map("native")
    wire_bytes = len(rolls.wire(0))
    gc.collect()
    before = rss()
    started = time.perf_counter()
    for n in range(records):
        handle = roll_handle(n)
        data = resolution_request(handle)
        shape = resolution_shape(data)
        assert shape is not None
        found = await cache.get(normalise(handle))
        entry = found.entry
        assert entry is not None and entry.wire is not None
        request = decode(data)
        message = build_reply(
            request,
            ResponseCode.SUCCESS,
            ResolutionReply(handle, found.decoded()),
            now=time.time(),
            site_serial=SITE_SERIAL,
        )
        cache.add_reply(replies, shape, entry, NativeReply(encode(message), entry.wire))
    seconds = time.perf_counter() - started
    gc.collect()
    after = rss()
    if len(cache.entries) != records or len(replies) != records:
        raise RuntimeError(f"{len(cache.entries)} entries, {len(replies)} replies of {records}")
    grown = after - before
    return {
        "records": records,
        "wire_bytes": wire_bytes,
        "rss_before": before,
        "rss_after": after,
        "rss_per_record": grown / records,
        "estimate": cache.bytes,
        "estimate_per_record": cache.bytes / records,
        "estimate_vs_rss": cache.bytes / grown - 1.0,
        "fill_seconds": seconds,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=200_000)
    p.add_argument("--fields", type=int, default=DEFAULT_FIELDS, help="roll fields (8: 573 B)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    r = asyncio.run(fill(args.records, args.fields))
    if args.json:
        print(json.dumps(r))
        return 0
    print(
        f"{r['records']:.0f} records of {r['wire_bytes']:.0f} B: RSS {r['rss_before'] / MiB:.0f} -> "
        f"{r['rss_after'] / MiB:.0f} MiB, {r['rss_per_record']:.0f} B per record; cache's "
        f"estimate {r['estimate'] / MiB:.0f} MiB ({r['estimate_per_record']:.0f} B per record, "
        f"{100 * r['estimate_vs_rss']:+.1f}% of the RSS it caused); "
        f"filled in {r['fill_seconds']:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
