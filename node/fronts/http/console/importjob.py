"""CSV import from the console: upload a file, watch a progress bar, read the rejects.

The upload (at most ``console_import_max_bytes`` and ``console_import_max_rows``) is
handed to the same ``BulkImporter`` as ``idnode import`` and ``POST /api/imports``, as a
background job of the admin who sent it: rows go in only under prefixes they hold
ADD_HANDLE on, so an enterprise cannot import into another's prefix; refused rows are
kept with their line and reason. The header may name the template's fields by key
(``rollNumber``), Chinese name (``卷号``) or English label; names are turned into keys
before the importer reads it. The job's page reloads itself each second while it runs.

A job is a row of the registry's ``imports`` table like any import's, created before the
upload's redirect with the file's row count and template (migration 0010), and advanced
by the importer in the transaction of each chunk; its refused rows are
``import_rejects``. The job's page and the list read those rows, so they answer the same
on every worker and every node on the registry. The import itself runs as a background
task of the worker that received the upload (at most ``MAX_RUNNING`` at once there); a
failure is written to the row.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import datetime

from aiohttp import BodyPartReader, web

from node.auth import Identity
from node.fronts.http.console import layout
from node.fronts.http.console.context import Ctx, Refused, upload_token_ok, view
from node.fronts.http.console.enterprise import templates
from node.fronts.http.console.layout import e, href
from node.fronts.http.console.sessions import CSRF_FIELD
from node.fronts.http.imports import import_authorizer
from node.fronts.http.services import HttpServices
from node.templates.catalog import registry_catalog
from node.writes.bulkimport import BulkImporter, ImportRefused, ImportRequest
from node.writes.bulkrows import RowPreparer
from protocol.templates import Template
from registry.bulk import ImportStore
from registry.console import ConsoleImport, ConsoleStore
from registry.errors import RegistryError

log = logging.getLogger("idnode.console.imports")

KEEP_JOBS = 100  # listed
MAX_RUNNING = 2
MAX_REJECTS_KEPT = 1000  # shown; the count goes on
READ_BYTES = 1 << 16
# The worker running an import touches its row this often; a row still "running" but
# untouched for STALE_S lost its worker (killed mid-import): the page says so and stops
# reloading, instead of waiting for ever.
HEARTBEAT_S = 10.0
STALE_S = 60.0


class ImportJobs:
    """The imports this worker runs, and the registry rows every worker reads."""

    def __init__(self, svc: HttpServices, store: ConsoleStore):
        self.svc = svc
        self.store = store
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def running(self) -> int:
        return len(self._tasks)

    async def start(
        self, identity: Identity, template: Template, name: str, data: bytes, rows: int
    ) -> str:
        """The new job's id, its row committed (so any worker shows it at once)."""
        job, source = f"console-{uuid.uuid4()}", f"console:{name}"
        await self.store.start_import(
            job,
            actor=identity.actor,
            source=source,
            template=template.handle,
            total_rows=rows,
            now=self.svc.now(),
        )
        task = asyncio.get_running_loop().create_task(
            self._run(job, source, rows, identity, template, data)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _fail(self, job: str, message: str) -> None:
        try:
            await self.store.fail_import(job, message, self.svc.now())
        except RegistryError as exc:
            log.warning("console import %s failed (%s); its row says so not: %s", job, message, exc)

    async def _run(
        self, job: str, source: str, rows: int, identity: Identity, template: Template, data: bytes
    ) -> None:
        svc = self.svc
        importer = BulkImporter(
            ImportStore(svc.writes.registry),
            svc.writes.templates or registry_catalog(svc.writes.registry),
            # Small chunks, so the bar moves: about twenty steps for a file.
            chunk_rows=max(50, min(svc.settings.import_chunk_rows, rows // 20 or 1)),
            clock=svc.now,
            preparer=RowPreparer(svc.writes.signer),
            authorize=import_authorizer(svc, identity),
        )

        async def blocks() -> AsyncIterator[bytes]:
            for start in range(0, len(data), READ_BYTES):
                yield data[start : start + READ_BYTES]

        ask = ImportRequest(job, identity.actor, source, "csv", template.handle)
        beat = asyncio.get_running_loop().create_task(self._heartbeat(job))
        try:
            await importer.run(blocks(), ask)
        except (ImportRefused, RegistryError) as exc:
            await self._fail(job, exc.message)
        except asyncio.CancelledError:
            await self._fail(job, "the node stopped during the import; upload the file again")
            raise
        except Exception:
            log.exception("console import %s failed", job)
            await self._fail(job, "internal server error")
        finally:
            beat.cancel()

    async def _heartbeat(self, job: str) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            # A registry that fails here fails the import too, which says so.
            with contextlib.suppress(RegistryError):
                await self.store.touch_import(job, self.svc.now())


def keyed_header(data: bytes, template: Template) -> bytes:
    """The file with its header's field names and labels replaced by the field keys
    (``handle`` and unknown columns are left for the importer to judge)."""
    bom = b"\xef\xbb\xbf" if data.startswith(b"\xef\xbb\xbf") else b""
    body = data[len(bom) :]
    line, sep, rest = body.partition(b"\n")
    try:
        names = next(csv.reader([line.decode("utf-8").rstrip("\r")]))
    except (UnicodeDecodeError, csv.Error, StopIteration):
        return data  # the importer says what is wrong with it
    by_name = {}
    for f in template.fields:
        for alias in (f.name, f.label):
            if alias:
                by_name[alias.strip().lower()] = f.key
    keys = [by_name.get(n.strip().lower(), n) for n in names]
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(keys)
    return bom + out.getvalue().encode("utf-8") + sep + rest


def count_rows(data: bytes) -> int:
    """Data rows: records after the header (a quoted cell may span lines)."""
    try:
        return max(0, sum(1 for r in csv.reader(io.StringIO(data.decode("utf-8-sig"))) if r) - 1)
    except (UnicodeDecodeError, csv.Error):
        return max(0, data.count(b"\n"))


def _state(j: ConsoleImport, now: datetime) -> str:
    if j.failure is not None:
        return "failed"
    if j.state == "running" and (now - j.updated_at).total_seconds() > STALE_S:
        return "interrupted"
    return j.state


def _rows_done(j: ConsoleImport) -> int:
    if j.state == "done":
        return j.total_rows
    return min(j.total_rows, max(0, j.through_line - 1))  # line 1 is the header


def _file_name(j: ConsoleImport) -> str:
    return j.source.removeprefix("console:")


def _job_row(j: ConsoleImport, now: datetime) -> tuple[str, ...]:
    return (
        f'<a href="{href("imports/" + j.job)}">{e(_file_name(j))}</a>',
        e(j.template),
        e(_state(j, now)),
        e(f"{_rows_done(j)}/{j.total_rows}"),
        e(j.loaded),
        e(j.rejected),
    )


async def _visible_jobs(ctx: Ctx) -> list[ConsoleImport]:
    jobs: ImportJobs = ctx.console.imports
    return await jobs.store.list_imports(
        None if ctx.roles.sees_all else ctx.identity.actor, KEEP_JOBS
    )


@view
async def imports_page(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    t = ctx.t
    assert ctx.session is not None
    options = "".join(
        f'<option value="{e(x.handle)}">{e(x.handle)} {e(x.name)}</option>'
        for x in await templates(ctx)
    )
    form = (
        f'<section><form method="post" action="{href("imports")}" enctype="multipart/form-data">'
        f"{layout.csrf_field(ctx.session.csrf)}"
        f'<label for="template">{e(t("template"))}</label><select id="template" name="template">{options}</select>'
        f'<label for="file">{e(t("csv_file"))} <small>{e(t("csv_hint"))}</small></label>'
        f'<input id="file" name="file" type="file" accept=".csv,text/csv">'
        f'<p><button type="submit">{e(t("upload"))}</button></p></form></section>'
    )
    heads = [t("csv_file"), t("template"), t("status"), t("rows"), t("loaded"), t("rejected")]
    now = ctx.svc.now()
    rows = [_job_row(j, now) for j in await _visible_jobs(ctx)]
    recent = f"<section><h2>{e(t('recent_imports'))}</h2>{layout.table(heads, rows)}</section>"
    return layout.reply(layout.framed(ctx.page(request), t("imports"), form + recent))


async def _upload(request: web.Request, ctx: Ctx) -> tuple[str, str, str, bytes]:
    """(csrf, template, file name, file bytes) from the multipart form, the file bounded."""
    limit = ctx.svc.settings.console_import_max_bytes
    fields: dict[str, str] = {}
    name, data = "", b""
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            continue
        if part.name == "file":
            name = (part.filename or "upload.csv")[:200]
            chunks, size = [], 0
            while block := await part.read_chunk(READ_BYTES):
                size += len(block)
                if size > limit:
                    raise Refused(413, "too_large", f"> {limit} bytes (console_import_max_bytes)")
                chunks.append(block)
            data = b"".join(chunks)
        elif part.name in (CSRF_FIELD, "template"):
            fields[part.name] = (await part.read(decode=True)).decode("utf-8", "replace")[:1000]
    return fields.get(CSRF_FIELD, ""), fields.get("template", ""), name, data


@view
async def start_import(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    if request.content_type != "multipart/form-data":
        raise Refused(400, "no_file")
    token, name, file_name, data = await _upload(request, ctx)
    upload_token_ok(ctx, token)
    if not data.strip():
        raise Refused(400, "no_file")
    catalog = ctx.svc.writes.templates
    template = await catalog.get(name) if catalog is not None and name else None
    if template is None:
        raise Refused(404, "not_found", f"{ctx.t('template')}: {name}")
    rows = count_rows(data)
    most = ctx.svc.settings.console_import_max_rows
    if rows > most:
        raise Refused(413, "too_many_rows", f"{rows} > {most} (console_import_max_rows)")
    jobs: ImportJobs = ctx.console.imports
    if jobs.running >= MAX_RUNNING:
        raise Refused(429, "busy")
    job = await jobs.start(ctx.identity, template, file_name, keyed_header(data, template), rows)
    return web.Response(
        status=303, headers={"Location": href("imports/" + job), "Cache-Control": "no-store"}
    )


@view
async def job_page(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    t = ctx.t
    jobs: ImportJobs = ctx.console.imports
    job = await jobs.store.get_import(request.match_info["job"][:200])
    # Another admin's job is not found, not forbidden: its name says nothing either way.
    if job is None or not (ctx.roles.sees_all or job.actor == ctx.identity.actor):
        raise Refused(404, "not_found")
    refused = await ImportStore(ctx.svc.writes.registry).rejects(job.job, 0, MAX_REJECTS_KEPT)
    now_state = _state(job, ctx.svc.now())
    state = {
        "running": t("running"),
        "done": t("done"),
        "failed": t("import_failed"),
        "interrupted": t("import_interrupted"),
    }[now_state]
    total = max(job.total_rows, 1)
    done = _rows_done(job)
    summary = layout.table(
        [t("rows"), t("loaded"), t("existing"), t("rejected")],
        [(e(f"{done}/{job.total_rows}"), e(job.loaded), e(job.existing), e(job.rejected))],
    )
    message = layout.notice(job.failure, "err") if job.failure else ""
    if now_state == "interrupted":
        message = layout.notice(t("import_interrupted_why"), "err")
    rejects = layout.table(
        [t("line"), t("handle"), t("reason")],
        [(e(r.line), f"<code>{e(r.handle)}</code>", e(r.reason)) for r in refused],
    )
    content = (
        f"<section><p>{e(_file_name(job))} · {e(job.template)} · <b id=state>{e(state)}</b></p>"
        f'<label for="bar">{e(t("progress"))}</label>'
        f'<progress id="bar" max="{total}" value="{done}">{done}/{total}</progress>'
        f"{summary}</section>{message}"
        f"<section><h2>{e(t('rejects'))} ({e(job.rejected)})</h2>{rejects}</section>"
    )
    return layout.reply(
        layout.framed(
            ctx.page(request),
            f"{t('import_job')} {job.job}",
            content,
            refresh_s=1 if now_state == "running" else None,
        )
    )
