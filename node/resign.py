"""``idnode resign``: re-sign stored records with the current key, in batches, resumably.

Handles are walked in key order, ``batch`` at a time; each record is written through
``WriteService.resign`` (its own short transaction with ``expected_version``: a
concurrent write wins and is signed on its own), so no lock is held across records or
batches and resolution is never blocked. After each batch the last handle key done is
saved in ``resign_progress`` (migration 0002); a run that stops resumes after it, a run
that completes removes its row.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TextIO

from protocol.handle import normalise, parse_handle
from registry.queries import q
from registry.store import Registry

from .writes import WriteService

ALL = "*"


def progress_printer(
    out: TextIO = sys.stderr, width: int = 30
) -> Callable[[int, int, Counter[str]], None]:
    """A one-line progress bar, rewritten in place (``\\r``), newline at the end."""

    def show(done: int, total: int, counts: Counter[str]) -> None:
        filled = width * done // total if total else width
        tally = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        end = "\n" if done >= total else ""
        out.write(f"\rresign [{'#' * filled}{'.' * (width - filled)}] {done}/{total} {tally}{end}")
        out.flush()

    return show


async def resign_all(
    registry: Registry,
    writes: WriteService,
    *,
    prefix: str | None = None,
    batch: int = 500,
    actor: str = "idnode resign",
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    progress: Callable[[int, int, Counter[str]], None] | None = None,
    restart: bool = False,
) -> Counter[str]:
    """Re-sign every record (under ``prefix``); returns the outcome counts of this run."""
    if batch < 1:
        raise ValueError("batch must be at least 1")
    job = normalise(prefix) if prefix else ALL
    prefix_key = normalise(prefix) if prefix else None
    pool = registry.pool
    row = None if restart else await pool.fetchrow(q("resign_progress_get"), job)
    last_key, done = (row["last_key"], row["done"]) if row is not None else ("", 0)
    total = done + await pool.fetchval(q("resign_count"), last_key, prefix_key)
    counts: Counter[str] = Counter()
    if progress is not None:
        progress(done, total, counts)
    while True:
        rows = await pool.fetch(q("resign_next_batch"), last_key, prefix_key, batch)
        if not rows:
            break
        for r in rows:
            counts[await writes.resign(parse_handle(r["handle"]), actor=actor, now=clock())] += 1
        last_key, done = rows[-1]["handle_key"], done + len(rows)
        await pool.execute(q("resign_progress_save"), job, last_key, done, clock())
        if progress is not None:
            progress(done, max(total, done), counts)
    await pool.execute(q("resign_progress_clear"), job)
    if progress is not None and done < total:  # records deleted meanwhile: finish the line
        progress(total, total, counts)
    return counts
