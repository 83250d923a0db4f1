"""``idnode import`` and ``idnode export`` (docs/import.md): records in bulk, as the
operator, straight into the registry (no node needs to run; one that does keeps
answering, and hears of every new handle through the registry's notifications).

``import`` prints a progress line on stderr (rewritten in place on a terminal, a plain
line every ``PLAIN_EVERY_S`` otherwise) and a JSON summary on stdout. Run it again after
an interruption: the job (named by the file, its size and time, the template and the
operator; ``--job`` names it yourself) resumes after its last committed chunk, and the
reject file is rebuilt from the job's committed rejects, so every refused row is in it
exactly once.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import hashlib
import io
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from node.cli.common import AddCommand, UserError, actor, now, print_json
from node.runtime.database import cli_database
from node.settings import Settings
from node.signing.signer import build_signer
from node.templates.catalog import registry_catalog
from node.writes.bulkexport import export_lines
from node.writes.bulkimport import (
    BulkImporter,
    ImportRequest,
    reject_json,
    summary_json,
    worker_pool,
)
from node.writes.bulkrows import RowPreparer
from registry.bulk import ChunkOutcome, ImportStore, Rejected

BLOCK_BYTES = 1 << 20
PLAIN_EVERY_S = 10.0
SHOWN_REJECTS = 20  # on stderr when no --rejects file is given


def file_job(path: Path, fmt: str, template: str | None, who: str) -> str:
    """The job a file's import runs as: the same file, unchanged, resumes the same job."""
    st = path.stat()
    identity = "\0".join(
        (str(path.resolve()), str(st.st_size), str(st.st_mtime_ns), fmt, template or "", who)
    )
    return "file:" + hashlib.sha256(identity.encode("utf-8")).hexdigest()[:32]


class RejectFile:
    """Refused rows as NDJSON, or CSV (line, handle, reason) for a ``.csv`` path."""

    def __init__(self, path: Path):
        self.path = path
        self.csv = path.suffix.lower() == ".csv"
        self._file: BinaryIO | None = None

    def open_fresh(self) -> None:
        self._file = self.path.open("wb")
        if self.csv:
            self._file.write(b"line,handle,reason\n")

    def write(self, rejected: list[Rejected]) -> None:
        assert self._file is not None
        self._file.write(b"".join(self._line(r) for r in rejected))
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()

    def _line(self, r: Rejected) -> bytes:
        if self.csv:
            out = io.StringIO()
            csv.writer(out, lineterminator="\n").writerow([r.line, r.handle, r.reason])
            return out.getvalue().encode("utf-8")
        return orjson.dumps(reject_json(r)) + b"\n"


class ProgressLine:
    """Rows done, rate and time left, on stderr."""

    def __init__(self, total_bytes: int, clock: Callable[[], float]):
        self.total_bytes = total_bytes
        self.clock = clock
        self.started = clock()
        self.read_bytes = 0
        self.tty = sys.stderr.isatty()
        self._last_plain = self.started

    def update(self, rows: int, final: bool = False) -> None:
        elapsed = max(self.clock() - self.started, 1e-9)
        rate = rows / elapsed
        share = self.read_bytes / self.total_bytes if self.total_bytes else 1.0
        eta = elapsed * (1 - share) / share if 0 < share < 1 else 0.0
        text = f"{rows} rows  {rate:,.0f}/s  ETA {_duration(eta)}"
        if self.tty:
            sys.stderr.write(f"\r{text}\x1b[K" + ("\n" if final else ""))
        elif final or self.clock() - self._last_plain >= PLAIN_EVERY_S:
            self._last_plain = self.clock()
            sys.stderr.write(f"import: {text}\n")
        sys.stderr.flush()


def _duration(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


async def file_blocks(path: Path, progress: ProgressLine) -> AsyncIterator[bytes]:
    with path.open("rb") as f:
        while block := await asyncio.to_thread(f.read, BLOCK_BYTES):
            progress.read_bytes += len(block)
            yield block


def _request(args: argparse.Namespace) -> tuple[ImportRequest, int]:
    """The job to run for ``args.file``, and the file's size (for the ETA)."""
    path = Path(args.file)
    if not path.is_file():
        raise UserError(f"cannot read {path}: no such file")
    fmt = args.format or ("csv" if path.suffix.lower() == ".csv" else "ndjson")
    who = actor()
    job = args.job or file_job(path, fmt, args.template, who)
    return ImportRequest(job, who, str(path.resolve()), fmt, args.template), path.stat().st_size


async def cmd_import(settings: Settings, args: argparse.Namespace) -> int:
    request, size = _request(args)
    path, job = Path(args.file), request.job
    workers = (os.cpu_count() or 1) if args.processes is None else args.processes
    progress = ProgressLine(size, time.monotonic)
    rejects = RejectFile(Path(args.rejects)) if args.rejects else None
    shown: list[Rejected] = []
    async with cli_database(settings) as db:
        store = ImportStore(db.registry)
        now_s = int(now().timestamp())
        # The key store is opened (a key made, if none) here, before any worker does.
        signer = build_signer(settings, now_s) if settings.sign_records else None
        executor = worker_pool(settings, now_s, workers) if workers > 0 else None
        try:
            importer = BulkImporter(
                store,
                registry_catalog(db.registry),
                chunk_rows=settings.import_chunk_rows,
                clock=now,
                preparer=RowPreparer(signer) if executor is None else None,
                executor=executor,
                workers=workers,
            )
            if rejects is not None:
                rejects.open_fresh()
                after = 0
                while page := await store.rejects(job, after):
                    rejects.write(page)
                    after = page[-1].line

            async def on_chunk(outcome: ChunkOutcome, rows: int) -> None:
                if rejects is not None:
                    rejects.write(list(outcome.rejected))
                else:
                    shown.extend(outcome.rejected[: SHOWN_REJECTS - len(shown)])
                progress.update(rows)

            summary = await importer.run(file_blocks(path, progress), request, on_chunk)
        finally:
            if executor is not None:
                executor.shutdown(cancel_futures=True)
            if rejects is not None:
                rejects.close()
    progress.update(summary.rows, final=True)
    for r in shown:
        sys.stderr.write(f"line {r.line}: {r.handle}: {r.reason}\n")
    if summary.job.rejected and rejects is None:
        sys.stderr.write(f"{summary.job.rejected} rows refused; --rejects FILE lists them all\n")
    seconds = progress.clock() - progress.started
    print_json(
        {**summary_json(summary, seconds), "rejectsFile": str(rejects.path) if rejects else None}
    )
    return 0


async def cmd_export(settings: Settings, args: argparse.Namespace) -> int:
    out = sys.stdout.buffer
    async with cli_database(settings) as db:
        lines = export_lines(
            ImportStore(db.registry),
            registry_catalog(db.registry),
            args.prefix,
            args.format,
            args.template,
        )
        async for line in lines:
            out.write(line)
    out.flush()
    return 0


def add_commands(sub: Any, command: AddCommand) -> None:
    p = command(
        "import",
        cmd_import,
        "load records in bulk from a CSV or NDJSON file (resumable; docs/import.md)",
        sub,
    )
    p.add_argument("file", help="CSV (header: handle + template fields) or NDJSON")
    p.add_argument("--template", help="template handle the rows follow (required for CSV)")
    p.add_argument("--format", choices=("csv", "ndjson"), help="default: from the file name")
    p.add_argument("--rejects", help="write refused rows here (.csv: CSV, else NDJSON)")
    p.add_argument("--job", help="job id to start or resume (default: from the file)")
    p.add_argument(
        "--processes",
        type=int,
        help="worker processes checking and signing rows (default: one per CPU; 0: none)",
    )
    p = command("export", cmd_export, "write every record under a prefix as CSV or NDJSON", sub)
    p.add_argument("prefix")
    p.add_argument("--format", choices=("csv", "ndjson"), default="ndjson")
    p.add_argument("--template", help="only records citing it, their fields by name")
