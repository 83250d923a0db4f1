"""``POST /api/imports`` (docs/import.md): NDJSON records in, NDJSON results out, both
streamed — one line per refused row and one per committed chunk while the body is still
arriving, then a summary line.

The caller is an admin (``require_identity``); rows go in only under prefixes they hold
ADD_HANDLE on (``Authorizer.require_on_prefix``), so one enterprise cannot import into
another's prefix: those rows are refused, with the reason, and the rest go in. The body
is read in pieces, never whole, and bounded by ``import_max_bytes``: a declared length
over it is 413 before anything is read; a chunked body that grows past it ends the
stream with an error line (the committed chunks stay, and ``?job=`` resumes).

Rows are prepared in worker processes (a small body: a thread), so the event loop keeps
answering resolution while an import runs.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import Executor
from typing import Any

import orjson
from aiohttp import web

from node.auth import Denied, Identity
from node.fronts.http.app import Extension
from node.fronts.http.errors import ApiError
from node.fronts.http.reply import CORS_HEADERS, NO_STORE
from node.fronts.http.services import HttpServices, services
from node.templates.catalog import registry_catalog
from node.writes.bulkimport import (
    Authorize,
    BulkImporter,
    ImportRefused,
    ImportRequest,
    reject_json,
    summary_json,
    worker_pool,
)
from node.writes.bulkrows import RowPreparer
from protocol.codes import AdminPerm
from protocol.codes import ResponseCode as RC
from registry.bulk import ChunkOutcome, ImportStore
from registry.errors import RegistryError

log = logging.getLogger("idnode.http.imports")

NDJSON_TYPE = "application/x-ndjson"
ACCEPTED_TYPES = ("application/x-ndjson", "application/ndjson", "application/jsonl", "text/plain")
READ_BYTES = 1 << 16
IN_THREAD_BYTES = 4 << 20  # a body declared smaller is prepared in a thread, not processes
MAX_WORKERS = 2
_JOB = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")


def import_routes() -> Extension:
    def extend(app: web.Application) -> None:
        app.router.add_post("/api/imports", post_import, name="imports")

    return extend


def _check_request(request: web.Request, limit: int) -> tuple[str | None, str | None]:
    """(job, template) from the query; ApiError for what is wrong before any reading."""
    ctype = request.headers.get("Content-Type")
    if ctype is not None and ctype.split(";", 1)[0].strip().lower() not in ACCEPTED_TYPES:
        raise ApiError(
            RC.PROTOCOL_ERROR,
            f"unsupported Content-Type {ctype.split(';', 1)[0]!r}: send {NDJSON_TYPE}",
            status=415,
        )
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(
            RC.PROTOCOL_ERROR,
            f"request body of {request.content_length} bytes exceeds {limit} bytes "
            "(import_max_bytes): split the file",
            status=413,
        )
    job = request.query.get("job")
    if job is not None and not _JOB.match(job):
        raise ApiError(RC.PROTOCOL_ERROR, "job= must be 1-100 letters, digits and . _ : -")
    return job, request.query.get("template") or None


async def _body(request: web.Request, limit: int) -> AsyncIterator[bytes]:
    seen = 0
    async for block in request.content.iter_chunked(READ_BYTES):
        seen += len(block)
        if seen > limit:
            raise ImportRefused(f"the body exceeds {limit} bytes (import_max_bytes): split it")
        yield block


def import_authorizer(svc: HttpServices, identity: Identity) -> Authorize:
    """Rows go in only under prefixes ``identity`` holds ADD_HANDLE on; the reason else."""

    async def check(prefix: str) -> str | None:
        try:
            await svc.authorizer.require_on_prefix(identity, int(AdminPerm.ADD_HANDLE), prefix)
        except Denied as exc:
            return exc.message
        return None

    return check


async def post_import(request: web.Request) -> web.StreamResponse:
    svc = services(request)
    limit = svc.settings.import_max_bytes
    job, template = _check_request(request, limit)
    identity = await svc.require_identity(request, "an import")
    store = ImportStore(svc.writes.registry)
    # Job ids are the client's to choose: one named by another admin is not theirs to resume.
    job = job or f"http-{uuid.uuid4()}"
    found = await store.get_job(job)
    if found is not None and found.actor != identity.actor:
        raise ApiError(RC.HANDLE_ALREADY_EXISTS, f"import job {job} belongs to another admin")
    started = svc.clock()
    small = request.content_length is not None and request.content_length <= IN_THREAD_BYTES
    executor: Executor | None = None
    if not small:
        executor = await asyncio.to_thread(worker_pool, svc.settings, int(started), MAX_WORKERS)
    importer = BulkImporter(
        store,
        svc.writes.templates or registry_catalog(svc.writes.registry),
        chunk_rows=svc.settings.import_chunk_rows,
        clock=svc.now,
        preparer=RowPreparer(svc.writes.signer) if executor is None else None,
        executor=executor,
        workers=MAX_WORKERS if executor is not None else 1,
        authorize=import_authorizer(svc, identity),
    )
    response = web.StreamResponse(
        status=200,
        headers={"Content-Type": NDJSON_TYPE, "Cache-Control": NO_STORE, **CORS_HEADERS},
    )
    await response.prepare(request)

    async def line(obj: dict[str, Any]) -> None:
        await response.write(orjson.dumps(obj) + b"\n")

    async def on_chunk(outcome: ChunkOutcome, rows: int) -> None:
        for r in outcome.rejected:
            await line({"type": "rejected", **reject_json(r)})
        p = outcome.job
        await line(
            {
                "type": "progress",
                "throughLine": p.through_line,
                "rows": rows,
                "loaded": p.loaded,
                "existing": p.existing,
                "rejected": p.rejected,
            }
        )

    ask = ImportRequest(job, identity.actor, "POST /api/imports", "ndjson", template)
    try:
        summary = await importer.run(_body(request, limit), ask, on_chunk)
        last = {"type": "summary", **summary_json(summary, svc.clock() - started)}
    except (ImportRefused, RegistryError) as exc:  # the response has started: say it in a line
        last = {"type": "error", "job": job, "message": exc.message}
    except ConnectionError:  # the client went away: what was committed stays (job= resumes)
        log.info("import %s: the client went away", job)
        return response
    except Exception:
        log.exception("import %s failed", job)
        last = {"type": "error", "job": job, "message": "internal server error"}
    finally:
        if executor is not None:
            await asyncio.to_thread(executor.shutdown, cancel_futures=True)
    try:
        await line(last)
    except ConnectionError:
        return response
    await response.write_eof()
    return response
