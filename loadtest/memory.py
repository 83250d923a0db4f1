"""The miss path, and the memory a node holds once every record is cached.

One fresh node (workers 1, ``cache_max_bytes`` 3 GiB so nothing is evicted, the TTL cap
raised so nothing expires during the fill) and one key stream that never repeats a key
(udpload ``perm``: every roll once per pass, hot ones scattered): every request of the
measured run is a miss (a registry read, a value decode, a reply built and cached), as
the node's counters confirm. The same stream then goes on through the rest of the
dataset, in quarters with progress lines, until every roll has been asked for once, and
a second pass fills in any a lost datagram left out. Then the node's resident set size
(VmRSS of the node and its workers) is read, with the cache's own entry count and byte
estimate, against a start-up baseline.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from loadtest.benchtable import Row
from loadtest.cache_native import UdpPlan, checks, measure, node, node_parties, row
from loadtest.harness import NodeProcess, process_tree, rss_bytes, sample_sum, scrape_samples
from loadtest.udpload import KeyStream, run_udpload

MEMORY_GOAL_BYTES = 900 << 20
GOAL_RECORDS = 1_000_000  # the goal is RSS <= 900 MiB with this many records cached
CACHE_BYTES_FOR_MEMORY = 3 << 30  # so that nothing is evicted and every record counts
MiB = 1 << 20


@dataclass(frozen=True)
class Memory:
    entries: float
    cache_bytes: float
    rss_before: int
    rss_after: int
    evictions: float
    fill_seconds: float
    fill_rate: float
    fill_lost: int  # requests udpload wrote off (no answer within 0.2 s) during the fill


def rss_of(pid: int) -> int:
    return rss_bytes(process_tree(pid))


def miss_and_memory(
    plan: UdpPlan, floor_rate: float | None, fill: bool
) -> tuple[list[Row], list[str]]:
    """Row 3 (miss path) always; row 5 (memory) when ``fill``."""
    env = {
        "IDNODE_CACHE_MAX_BYTES": str(CACHE_BYTES_FOR_MEMORY),
        "IDNODE_CACHE_MAX_ENTRIES": str(max(1_000_000, 2 * plan.keys)),
        "IDNODE_CACHE_TTL_CAP_S": "7200",  # the fill takes minutes: nothing may expire meanwhile
    }
    stream = KeyStream("perm", plan.keys)
    with node(plan, "miss_memory", env=env) as proc:
        rss_before = rss_of(proc.pid)
        plan.progress(
            f"3 miss: distinct identifiers only (perm over {plan.keys}), {plan.seconds:g} s"
        )
        # perm: the measured run takes the keys after the warm-up's, so none repeats.
        m = measure(
            plan,
            proc.handle_port,
            stream,
            metrics=[proc.admin_port],
            parties=node_parties(plan, proc),
        )
        hits = m.delta("idnode_cache_hits_total", front="udp")
        reads = m.delta("idnode_cache_registry_reads_total")
        ratio = m.run.blast.rate / floor_rate if floor_rate else None
        rows = [
            row(
                "3 miss/zipf",
                "idnode miss (every id new)",
                m,
                ratio,
                "floor" if ratio else "",
                detail=f"registry reads {reads:.0f} for {m.run.blast.replies} replies, "
                f"cache hits {hits:.0f}; {m.cpu_text()}",
            )
        ]
        notes = checks("miss", m, plan.window)
        if hits > 0.01 * max(1, m.run.blast.replies):
            notes.append(
                f"WARNING: miss path: {hits:.0f} cache hits in a run meant to miss every time"
            )
        if not fill:
            return rows, notes
        mem = _fill(plan, proc, m.run.next_start, rss_before)
    grown = mem.rss_after - mem.rss_before
    per_entry = grown / max(1.0, mem.entries)
    # The byte bound is only as honest as the cache's estimate of what it holds.
    honesty = (
        f" ({100 * (mem.cache_bytes / grown - 1):+.0f}% of the RSS it caused)" if grown > 0 else ""
    )
    projected = ""
    ok: bool | None = mem.rss_after <= MEMORY_GOAL_BYTES and mem.entries >= plan.keys
    if mem.entries < GOAL_RECORDS:  # --quick: the goal is for 1M; say where the slope leads
        at_goal = mem.rss_before + per_entry * GOAL_RECORDS
        projected = (
            f"; PROJECTED at {GOAL_RECORDS // 1000}k: {at_goal / MiB:.0f} MiB (not measured)"
        )
        ok = None
    rows.append(
        Row(
            "5 memory",
            f"RSS, {mem.entries / 1000:.0f}k records cached",
            goal=f"<={MEMORY_GOAL_BYTES // MiB}MiB",
            ok=ok,
            detail=(
                f"RSS {mem.rss_after / MiB:.0f} MiB (at start {mem.rss_before / MiB:.0f} MiB; {per_entry:.0f} B "
                f"per record{projected}); cache's own estimate {mem.cache_bytes / MiB:.0f} MiB{honesty}, evictions "
                f"{mem.evictions:.0f}; filled at {mem.fill_rate:.0f}/s in {mem.fill_seconds:.0f} s"
            ),
        )
    )
    if mem.fill_lost:
        notes.append(
            f"note: memory fill: udpload wrote off {mem.fill_lost} requests (windows of {plan.window} "
            "unanswered for 0.2 s: the node stalled); a second pass asked for them again"
        )
    if mem.entries < plan.keys:
        notes.append(
            f"WARNING: memory: only {mem.entries:.0f} of {plan.keys} records cached after the fill"
        )
    return rows, notes


def _fill(plan: UdpPlan, proc: NodeProcess, start: int, rss_before: int) -> Memory:
    """Ask for every key not yet asked for, in quarters (progress: records, RSS), then
    once more over all of them if a lost datagram left any out (cached ones answer from
    the cache, fast)."""
    remaining = max(0, plan.keys - start)
    plan.progress(
        f"5 memory: caching the other {remaining} records (the miss path sets the pace) ..."
    )
    began = time.perf_counter()
    replies = lost = 0
    step = max(1, -(-remaining // 4))
    passes = [
        (first, min(step, start + remaining - first))
        for first in range(start, start + remaining, step)
    ]
    for number, (first, count) in enumerate([*passes, (0, plan.keys)]):
        if number == len(passes) and _entries(proc) >= plan.keys:
            break  # the first pass cached every record: no second one
        stream = KeyStream("perm", plan.keys, start=first, count=count)
        result = run_udpload(
            plan.loader,
            proc.handle_port,
            stream,
            3600.0,
            plan.window,
            sockets=plan.sockets,
            cpu=plan.loader_cpu,
        )
        replies += result.blast.replies
        lost += result.blast.lost
        plan.progress(
            f"5 memory: {_entries(proc):.0f} records cached, RSS {rss_of(proc.pid) / MiB:.0f} MiB "
            f"({result.blast.rate:.0f}/s, {result.blast.lost} lost)"
        )
    seconds = time.perf_counter() - began
    time.sleep(1.0)  # let the loop finish what it had in hand before reading
    samples = scrape_samples(proc.admin_port)
    return Memory(
        entries=sample_sum(samples, "idnode_cache_entries"),
        cache_bytes=sample_sum(samples, "idnode_cache_bytes"),
        rss_before=rss_before,
        rss_after=rss_of(proc.pid),
        evictions=sample_sum(samples, "idnode_cache_evictions_total"),
        fill_seconds=seconds,
        fill_rate=replies / max(seconds, 1e-9),
        fill_lost=lost,
    )


def _entries(proc: NodeProcess) -> float:
    return sample_sum(scrape_samples(proc.admin_port), "idnode_cache_entries")
