"""Bulk import (docs/import.md): a CSV or NDJSON stream in, chunks of checked, signed
records committed through ``registry.bulk.ImportStore``, refused rows named.

The stream is cut into records (``RecordSplitter``) and into chunks of
``import_chunk_rows``; each chunk is prepared in batches (``node.writes.bulkrows``: in
worker processes, or a thread) while the one before it is being loaded, so parsing,
validation and signing run on every core while PostgreSQL writes. Chunks commit in
input order, each with the job's progress: a run that stops anywhere resumes after the
last committed chunk (records up to the job's ``through_line`` are read and skipped).

Authorization is by prefix, asked once per prefix per run (``authorize``): an admin
importing over HTTP may create handles only under the prefixes they administer
(ADD_HANDLE), so one enterprise cannot write into another's prefix; rows elsewhere are
refused, the others go in. The operator at the command line passes no check.
"""

from __future__ import annotations

import asyncio
import csv
import math
import multiprocessing
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from operator import attrgetter
from typing import Any

from node.errors import NodeError
from node.settings import Settings
from node.templates.catalog import TemplateCatalog
from node.writes.bulkrows import Batch, Prepared, RowPreparer, prepare_batch, start_worker
from protocol.templates import Template
from registry.bulk import ChunkOutcome, ImportJob, ImportRow, ImportStore, Rejected

FORMATS = ("csv", "ndjson")
AHEAD = 2  # chunks prepared ahead of the one being loaded (memory: ~64 MB each at 1M rows)
MIN_BATCH = 250  # records per worker task: fewer, and pickling costs more than it saves
MAX_RECORD_BYTES = 1 << 20  # one CSV row or NDJSON line (a record is at most ~256 KB)
WORKER_NICENESS = 10  # import workers yield the CPU to resolution
BOM = b"\xef\xbb\xbf"

# Why rows under a prefix may not be imported by this actor, or None: asked once per prefix.
Authorize = Callable[[str], Awaitable[str | None]]
OnChunk = Callable[[ChunkOutcome, int], Awaitable[None]]  # (outcome, records read this run)


class ImportRefused(NodeError):
    """The import cannot go on (the input as a whole is unusable); committed chunks stay."""


@dataclass(frozen=True)
class ImportRequest:
    job: str
    actor: str  # history rows name it; only it may resume the job
    source: str  # the file or endpoint, for the job row
    format: str  # "csv" | "ndjson"
    template: str | None = None  # CSV: required; NDJSON: for "fields" naming none


@dataclass(frozen=True)
class ImportSummary:
    job: ImportJob  # the job's totals as committed
    resumed_after: int  # the line this run started after (0: the whole input)
    rows: int = 0  # records read in this run
    loaded: int = 0  # in this run
    existing: int = 0
    rejected: int = 0

    @property
    def resumed(self) -> bool:
        return self.resumed_after > 0


class RecordSplitter:
    """Whole records out of byte blocks of any size, each with the line it starts on and
    the line it ends on. NDJSON: one record per line. CSV: a quoted cell may hold line
    breaks, so a record ends at a line break outside quotes (an even count of ``"``
    so far: RFC 4180 writes a quote inside a cell as two). Blank lines are skipped."""

    def __init__(self, fmt: str, max_record_bytes: int = MAX_RECORD_BYTES):
        self.csv = fmt == "csv"
        self.max_record_bytes = max_record_bytes
        self._rest = b""
        self._started = False  # past a byte order mark
        self._line = 0  # lines consumed
        self._pending: list[bytes] = []  # a CSV record so far, line by line
        self._pending_from = 0
        self._quotes = 0

    def feed(self, block: bytes) -> list[tuple[int, bytes, int]]:
        data = self._rest + block
        if not self._started:  # a UTF-8 byte order mark (spreadsheet exports) is no data
            if len(data) < len(BOM) and BOM.startswith(data):
                self._rest = data
                return []
            self._started = True
            data = data.removeprefix(BOM)
        cut = data.rfind(b"\n")
        if cut < 0:
            self._rest = data
            self._check_length(len(data))
            return []
        self._rest = data[cut + 1 :]
        self._check_length(len(self._rest))
        return self._records(data[:cut].split(b"\n"))

    def end(self) -> list[tuple[int, bytes, int]]:
        rest, self._rest = self._rest, b""
        if not self._started:
            rest = rest.removeprefix(BOM) if len(rest) >= len(BOM) else b""
        out = self._records([rest]) if rest else []
        if self._pending:
            start = self._pending_from
            raise ImportRefused(f"line {start}: a quoted CSV cell is never closed")
        return out

    def _check_length(self, size: int) -> None:
        if size + sum(len(p) for p in self._pending) > self.max_record_bytes:
            raise ImportRefused(
                f"line {self._line + 1} is longer than {self.max_record_bytes} bytes"
            )

    def _records(self, lines: list[bytes]) -> list[tuple[int, bytes, int]]:
        out = []
        first = self._line + 1
        self._line += len(lines)
        if not self.csv or (not self._pending and not any(b'"' in ln for ln in lines)):
            for n, raw in enumerate(lines, first):
                raw = raw.rstrip(b"\r")
                if raw.strip():
                    out.append((n, raw, n))
            return out
        for n, raw in enumerate(lines, first):
            if not self._pending:
                if not raw.strip(b"\r \t"):
                    continue
                self._pending_from = n
            self._pending.append(raw)
            self._quotes += raw.count(b'"')
            if self._quotes % 2 == 0:
                record = b"\n".join(self._pending).rstrip(b"\r")
                out.append((self._pending_from, record, n))
                self._pending, self._quotes = [], 0
            elif sum(len(p) for p in self._pending) > self.max_record_bytes:
                raise ImportRefused(
                    f"line {self._pending_from}: a quoted CSV cell runs past "
                    f"{self.max_record_bytes} bytes (never closed?)"
                )
        return out


@dataclass
class _Chunk:
    end_line: int  # the last input line it covers
    batches: list[Batch]
    prepared: list[asyncio.Future[Prepared]] = field(default_factory=list)

    @property
    def records(self) -> int:
        return sum(len(b.records) for b in self.batches)


class BulkImporter:
    def __init__(
        self,
        store: ImportStore,
        catalog: TemplateCatalog,
        *,
        chunk_rows: int,
        clock: Callable[[], datetime],
        preparer: RowPreparer | None = None,
        executor: Executor | None = None,
        workers: int = 1,
        authorize: Authorize | None = None,
    ):
        if (preparer is None) == (executor is None):
            raise ValueError("give either a preparer (in a thread) or an executor (processes)")
        self.store = store
        self.catalog = catalog
        self.chunk_rows = chunk_rows
        self.clock = clock
        self.preparer = preparer
        self.executor = executor
        self.workers = max(1, workers)
        self.authorize = authorize
        self._templates: dict[str, Template | None] = {}
        self._allowed: dict[str, str | None] = {}
        self._thread_lock = threading.Lock()  # one preparer: one batch at a time

    async def run(
        self,
        source: AsyncIterator[bytes],
        request: ImportRequest,
        on_chunk: OnChunk | None = None,
    ) -> ImportSummary:
        if request.format not in FORMATS:
            raise ImportRefused(f"format {request.format!r} is not one of {', '.join(FORMATS)}")
        if request.format == "csv" and not request.template:
            raise ImportRefused("a CSV import needs --template (the template its columns follow)")
        job = await self.store.start_job(
            request.job, actor=request.actor, source=request.source, now=self.clock()
        )
        summary = ImportSummary(job, job.through_line)
        if job.state == "done":
            return summary
        if request.template:
            await self._need([request.template])
            if self._templates[request.template.upper()] is None:
                raise ImportRefused(f"no such template {request.template} (IDIS_TEMPLATE)")
        queue: asyncio.Queue[_Chunk | None] = asyncio.Queue(maxsize=AHEAD)
        tally = [summary]

        async def consume() -> None:
            while (chunk := await queue.get()) is not None:
                tally[0] = await self._load(chunk, request, tally[0], on_chunk)

        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._produce(source, request, job.through_line, queue))
                tasks.create_task(consume())
        except BaseExceptionGroup as group:
            raise group.exceptions[0] from None
        done = await self.store.finish_job(request.job, self.clock())
        s = tally[0]
        return ImportSummary(done, s.resumed_after, s.rows, s.loaded, s.existing, s.rejected)

    # -- reading --------------------------------------------------------------------------

    async def _produce(
        self,
        source: AsyncIterator[bytes],
        request: ImportRequest,
        resume_after: int,
        queue: asyncio.Queue[_Chunk | None],
    ) -> None:
        splitter = RecordSplitter(request.format)
        header: tuple[str, ...] | None = None if request.format == "csv" else ()
        lines: list[int] = []
        records: list[bytes] = []
        end_line = resume_after

        async def flush() -> None:
            nonlocal lines, records
            if records:
                await queue.put(self._submit(request, header or (), lines, records, end_line))
                lines, records = [], []

        async def take(found: list[tuple[int, bytes, int]]) -> None:
            nonlocal header, end_line
            for line, raw, last in found:
                if header is None:
                    header = self._header(raw, request)
                    continue
                if last <= resume_after:
                    continue
                lines.append(line)
                records.append(raw)
                end_line = last
                if len(records) >= self.chunk_rows:
                    await flush()

        async for block in source:
            await take(splitter.feed(block))
        await take(splitter.end())
        if header is None:
            raise ImportRefused("the CSV input is empty: it needs a header line")
        await flush()
        await queue.put(None)

    def _header(self, raw: bytes, request: ImportRequest) -> tuple[str, ...]:
        """The CSV column names: ``handle`` and fields of the template, each once."""
        assert request.template is not None
        template = self._templates[request.template.upper()]
        assert template is not None
        try:
            names = next(csv.reader((raw.decode("utf-8"),), strict=True))
        except (UnicodeDecodeError, csv.Error, StopIteration) as exc:
            raise ImportRefused(f"line 1: the CSV header is unreadable: {exc}") from None
        seen: set[str] = set()
        for name in names:
            key = name.strip().lower()
            if key in seen:
                raise ImportRefused(f"line 1: the column {name!r} appears twice")
            seen.add(key)
            if key != "handle" and template.field(name.strip()) is None:
                known = ", ".join(f.key for f in template.fields)
                raise ImportRefused(
                    f"line 1: the column {name!r} is not a field of {template.handle} "
                    f"(its fields: {known})"
                )
        if "handle" not in seen:
            raise ImportRefused("line 1: the CSV header has no handle column")
        missing = [f.key for f in template.fields if f.required and f.key.lower() not in seen]
        if missing:
            raise ImportRefused(
                f"line 1: the CSV header lacks the required fields of {template.handle}: "
                + ", ".join(missing)
            )
        return tuple(names)

    def _submit(
        self,
        request: ImportRequest,
        header: tuple[str, ...],
        lines: list[int],
        records: list[bytes],
        end_line: int,
    ) -> _Chunk:
        """Start preparing a chunk: in batches sized to keep every worker busy."""
        size = max(MIN_BATCH, math.ceil(len(records) / (2 * self.workers)))
        if self.preparer is not None:
            size = len(records)
        now_s = int(self.clock().timestamp())
        templates = dict(self._templates)
        batches = [
            Batch(
                request.format,
                lines[at : at + size],
                records[at : at + size],
                now_s,
                header,
                request.template,
                templates,
            )
            for at in range(0, len(records), size)
        ]
        chunk = _Chunk(end_line, batches)
        chunk.prepared = [asyncio.ensure_future(self._prepare(b)) for b in batches]
        return chunk

    async def _prepare(self, batch: Batch) -> Prepared:
        if self.executor is not None:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self.executor, prepare_batch, batch)
        return await asyncio.to_thread(self._prepare_here, batch)

    def _prepare_here(self, batch: Batch) -> Prepared:
        assert self.preparer is not None
        with self._thread_lock:
            return self.preparer.prepare(batch)

    # -- loading --------------------------------------------------------------------------

    async def _load(
        self,
        chunk: _Chunk,
        request: ImportRequest,
        before: ImportSummary,
        on_chunk: OnChunk | None,
    ) -> ImportSummary:
        rows: list[ImportRow] = []
        refused: list[Rejected] = []
        for batch, future in zip(chunk.batches, chunk.prepared, strict=True):
            prepared = await future
            while prepared.wanting:  # records citing a template first seen in this batch
                await self._need(list(prepared.wanting))
                again = sorted(p for positions in prepared.wanting.values() for p in positions)
                retry = Batch(
                    batch.format,
                    [batch.lines[p] for p in again],
                    [batch.records[p] for p in again],
                    batch.now_s,
                    batch.header,
                    batch.template,
                    dict(self._templates),
                )
                rows += prepared.rows
                refused += prepared.rejected
                batch, prepared = retry, await self._prepare(retry)
            rows += prepared.rows
            refused += prepared.rejected
        rows, denied = await self._authorized(rows)
        refused += denied
        rows.sort(key=attrgetter("line"))
        refused.sort(key=attrgetter("line"))
        outcome = await self.store.load_chunk(
            request.job, rows, chunk.end_line, self.clock(), request.actor, refused=refused
        )
        after = ImportSummary(
            outcome.job,
            before.resumed_after,
            before.rows + chunk.records,
            before.loaded + outcome.loaded,
            before.existing + outcome.existing,
            before.rejected + len(outcome.rejected),
        )
        if on_chunk is not None:
            await on_chunk(outcome, after.rows)
        return after

    async def _need(self, names: Sequence[str]) -> None:
        for name in names:
            if name.upper() not in self._templates:
                self._templates[name.upper()] = await self.catalog.get(name)

    async def _authorized(self, rows: list[ImportRow]) -> tuple[list[ImportRow], list[Rejected]]:
        if self.authorize is None:
            return rows, []
        for prefix in {r.prefix_key for r in rows} - self._allowed.keys():
            self._allowed[prefix] = await self.authorize(prefix)
        denied = {p for p, why in self._allowed.items() if why is not None}
        if not denied:
            return rows, []
        kept = [r for r in rows if r.prefix_key not in denied]
        refused = [
            Rejected(r.line, r.handle, self._allowed[r.prefix_key] or "")
            for r in rows
            if r.prefix_key in denied
        ]
        return kept, refused


def reject_json(r: Rejected) -> dict[str, Any]:
    """A refused row as the reject file and POST /api/imports report it."""
    out: dict[str, Any] = {"line": r.line, "handle": r.handle, "reason": r.reason}
    if r.problems:
        out["problems"] = [
            {"field": p.key, "index": p.index, "value": p.value, "rule": p.rule} for p in r.problems
        ]
    return out


def summary_json(summary: ImportSummary, seconds: float) -> dict[str, Any]:
    """The summary ``idnode import`` prints and POST /api/imports ends with."""
    job = summary.job
    return {
        "job": job.job,
        "state": job.state,
        "resumed": summary.resumed,
        "resumedAfterLine": summary.resumed_after,
        "throughLine": job.through_line,
        "loaded": job.loaded,
        "existing": job.existing,
        "rejected": job.rejected,
        "thisRun": {
            "rows": summary.rows,
            "loaded": summary.loaded,
            "existing": summary.existing,
            "rejected": summary.rejected,
        },
        "seconds": round(seconds, 3),
        "rate": round(summary.rows / seconds, 1) if seconds > 0 else None,
    }


def worker_pool(settings: Settings, now_s: int, workers: int) -> ProcessPoolExecutor:
    """Processes preparing batches (``node.writes.bulkrows``), each with the node's
    signing key. Spawned, not forked: the parent runs an event loop and holds database
    connections that a forked child must not share."""
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=start_worker,
        initargs=(settings, now_s, WORKER_NICENESS, os.getpid()),
    )
