"""No acknowledged write is lost, whatever happens to the node or its PostgreSQL.

Six crashes, each on a real ``idnode serve`` with its own embedded server, while six
PUT writers and two batch writers (``POST /api/batches``, items and atomic mode) write
as the silk mill's admin: the node killed with -9, the postmaster killed with -9,
PostgreSQL stopped in immediate and in fast mode, PostgreSQL frozen (SIGSTOP), and the
node restarted while PostgreSQL is down. Afterwards every acknowledged write is in the
registry with its content, every errored one is there whole or not at all, and every
writer got an answer within a bound: an acknowledgement, 503 with RC 3, or (only while
the node itself is down) a refused connection. The ledger and its rules:
tests/e2e/durability_support.py.

Narrower checks of the same crashes: a CLI write surviving the node's kill -9
(tests/node/serving/test_serve.py), the embedded server adopted or recovered after one
(tests/registry/test_embedded.py), serve-stale while PostgreSQL is down
(tests/node/resolution/cache/test_stale.py).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

from tests.e2e.durability_support import (
    BOUND_S,
    FREEZE_S,
    PUT_WRITERS,
    Verdict,
    frozen,
    scenario,
    stop_node,
)


def assert_durable(verdict: Verdict, *, errors_seen: bool = True) -> None:
    print(f"\n{verdict.summary()}")
    assert verdict.problems() == [], verdict.summary()
    assert verdict.acked_present == verdict.acked_writes > 0, verdict.summary()
    if errors_seen:  # the fault was hit mid-stream, not before or after the writes
        assert verdict.errored_writes > 0, verdict.summary()


async def test_node_killed_with_9(idnode_data_dir: Path) -> None:
    async with scenario(idnode_data_dir, "NODEKILL") as run:
        run.writers.phase = "fault"
        await asyncio.to_thread(run.node.kill9)
        await run.until_errors(PUT_WRITERS, "refused")
        await run.restart_node()  # adopts the server the killed node left running
        await run.recover()
        verdict = await run.verdict(node_went_down=True)
    assert_durable(verdict)


async def test_postmaster_killed_with_9(idnode_data_dir: Path) -> None:
    async with scenario(idnode_data_dir, "PMKILL") as run:
        postmaster = run.pg.postmaster_pid()
        assert postmaster is not None
        run.writers.phase = "fault"
        os.kill(postmaster, signal.SIGKILL)
        await run.until_errors(PUT_WRITERS)
        await asyncio.to_thread(run.pg.start)  # waits out the orphaned backends
        await run.recover()  # the node's pool reconnects by itself
        verdict = await run.verdict(node_went_down=False)
    assert_durable(verdict)


async def test_postgres_immediate_stop(idnode_data_dir: Path) -> None:
    async with scenario(idnode_data_dir, "IMMEDIATE") as run:
        run.writers.phase = "fault"
        await asyncio.to_thread(run.pg.stop, mode="immediate")
        await run.until_errors(PUT_WRITERS)
        await asyncio.to_thread(run.pg.start)
        await run.recover()
        verdict = await run.verdict(node_went_down=False)
    assert_durable(verdict)


async def test_postgres_fast_stop(idnode_data_dir: Path) -> None:
    async with scenario(idnode_data_dir, "FAST") as run:
        run.writers.phase = "fault"
        await asyncio.to_thread(run.pg.stop, mode="fast")
        await run.until_errors(PUT_WRITERS)
        await asyncio.to_thread(run.pg.start)
        await run.recover()
        verdict = await run.verdict(node_went_down=False)
    assert_durable(verdict)


async def test_postgres_frozen(idnode_data_dir: Path) -> None:
    async with scenario(idnode_data_dir, "FROZEN") as run:
        run.writers.phase = "fault"
        thaw_at = time.monotonic() + FREEZE_S
        with frozen(run.pg) as stopped:
            assert len(stopped) > 1  # the postmaster and its backends
            await run.until_errors(PUT_WRITERS)
            # The fault is a freeze of FREEZE_S, longer than any write may take.
            await asyncio.sleep(max(0.0, thaw_at - time.monotonic()))
        await run.recover()
        verdict = await run.verdict(node_went_down=False)
    assert_durable(verdict)


async def test_node_restarted_while_postgres_is_down(idnode_data_dir: Path) -> None:
    async with scenario(idnode_data_dir, "RESTART") as run:
        run.writers.phase = "fault"
        await asyncio.to_thread(run.pg.stop, mode="immediate")
        await run.until_errors(PUT_WRITERS)
        took = await asyncio.to_thread(stop_node, run.node)  # exits 0, without its registry
        assert took < BOUND_S, f"shutdown without PostgreSQL took {took:.1f} s"
        assert "idnode stopped" in run.node.output
        await run.restart_node()  # starts the server again
        await run.recover()
        verdict = await run.verdict(node_went_down=True)
    assert_durable(verdict)
