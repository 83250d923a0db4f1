"""CSV import from the console: upload a file, watch a progress bar, read the rejects.

The upload (at most ``console_import_max_bytes`` and ``console_import_max_rows``) is
handed to the same ``BulkImporter`` as ``idnode import`` and ``POST /api/imports``, as a
background job of the admin who sent it: rows go in only under prefixes they hold
ADD_HANDLE on, so an enterprise cannot import into another's prefix; refused rows are
kept with their line and reason. The header may name the template's fields by key
(``rollNumber``), Chinese name (``卷号``) or English label; names are turned into keys
before the importer reads it. The job's page reloads itself each second while it runs.

Jobs live in this process (a bounded table of the latest ``KEEP_JOBS``); what they
committed is in the registry like any import's (``import_jobs``, the history rows).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import logging
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aiohttp import BodyPartReader, web

from node.auth import Denied, Identity
from node.fronts.http.console import layout
from node.fronts.http.console.context import Ctx, Refused, upload_token_ok, view
from node.fronts.http.console.enterprise import templates
from node.fronts.http.console.layout import e, href
from node.fronts.http.console.sessions import CSRF_FIELD
from node.fronts.http.services import HttpServices
from node.templates.catalog import registry_catalog
from node.writes.bulkimport import Authorize, BulkImporter, ImportRefused, ImportRequest
from node.writes.bulkrows import RowPreparer
from protocol.codes import AdminPerm
from protocol.templates import Template
from registry.bulk import ChunkOutcome, ImportStore, Rejected
from registry.errors import RegistryError

log = logging.getLogger("idnode.console.imports")

KEEP_JOBS = 100
MAX_RUNNING = 2
MAX_REJECTS_KEPT = 1000  # shown; the count goes on
READ_BYTES = 1 << 16


@dataclass
class Job:
    id: str
    actor: str
    template: str
    file_name: str
    total_rows: int
    state: str = "running"  # running | done | failed
    through_line: int = 0
    loaded: int = 0
    existing: int = 0
    rejected: int = 0
    rejects: list[Rejected] = field(default_factory=list)
    message: str = ""

    @property
    def rows_done(self) -> int:
        return min(self.total_rows, max(0, self.through_line - 1))  # line 1 is the header


class ImportJobs:
    def __init__(self, svc: HttpServices):
        self.svc = svc
        self.jobs: OrderedDict[str, Job] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def running(self) -> int:
        return sum(1 for j in self.jobs.values() if j.state == "running")

    def start(
        self, identity: Identity, template: Template, name: str, data: bytes, rows: int
    ) -> Job:
        job = Job(f"console-{uuid.uuid4()}", identity.actor, template.handle, name, rows)
        self.jobs[job.id] = job
        while len(self.jobs) > KEEP_JOBS:
            oldest = next((k for k, j in self.jobs.items() if j.state != "running"), None)
            if oldest is None:
                break
            del self.jobs[oldest]
        task = asyncio.get_running_loop().create_task(self._run(job, identity, template, data))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self, job: Job, identity: Identity, template: Template, data: bytes) -> None:
        svc = self.svc
        importer = BulkImporter(
            ImportStore(svc.writes.registry),
            svc.writes.templates or registry_catalog(svc.writes.registry),
            # Small chunks, so the bar moves: about twenty steps for a file.
            chunk_rows=max(50, min(svc.settings.import_chunk_rows, job.total_rows // 20 or 1)),
            clock=svc.now,
            preparer=RowPreparer(svc.writes.signer),
            authorize=_authorize(svc, identity),
        )

        async def on_chunk(outcome: ChunkOutcome, rows: int) -> None:
            p = outcome.job
            job.through_line, job.loaded, job.existing = p.through_line, p.loaded, p.existing
            job.rejected = p.rejected
            room = MAX_REJECTS_KEPT - len(job.rejects)
            job.rejects.extend(outcome.rejected[: max(0, room)])

        async def source() -> AsyncIterator[bytes]:
            for start in range(0, len(data), READ_BYTES):
                yield data[start : start + READ_BYTES]

        ask = ImportRequest(
            job.id, identity.actor, f"console:{job.file_name}", "csv", template.handle
        )
        try:
            summary = await importer.run(source(), ask, on_chunk)
            j = summary.job
            job.through_line, job.loaded, job.existing, job.rejected = (
                j.through_line,
                j.loaded,
                j.existing,
                j.rejected,
            )
            job.state = "done"
        except (ImportRefused, RegistryError) as exc:
            job.state, job.message = "failed", exc.message
        except Exception:
            log.exception("console import %s failed", job.id)
            job.state, job.message = "failed", "internal server error"


def _authorize(svc: HttpServices, identity: Identity) -> Authorize:
    async def check(prefix: str) -> str | None:
        try:
            await svc.authorizer.require_on_prefix(identity, int(AdminPerm.ADD_HANDLE), prefix)
        except Denied as exc:
            return exc.message
        return None

    return check


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


def _job_row(j: Job) -> tuple[str, ...]:
    return (
        f'<a href="{href("imports/" + j.id)}">{e(j.file_name)}</a>',
        e(j.template),
        e(j.state),
        e(f"{j.rows_done}/{j.total_rows}"),
        e(j.loaded),
        e(j.rejected),
    )


def _visible_jobs(ctx: Ctx) -> list[Job]:
    jobs: ImportJobs = ctx.console.imports
    return [
        j
        for j in reversed(jobs.jobs.values())
        if ctx.roles.sees_all or j.actor == ctx.identity.actor
    ]


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
    rows = [_job_row(j) for j in _visible_jobs(ctx)]
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
    job = jobs.start(ctx.identity, template, file_name, keyed_header(data, template), rows)
    return web.Response(
        status=303, headers={"Location": href("imports/" + job.id), "Cache-Control": "no-store"}
    )


@view
async def job_page(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    t = ctx.t
    jobs: ImportJobs = ctx.console.imports
    job = jobs.jobs.get(request.match_info["job"])
    if job is None or not (ctx.roles.sees_all or job.actor == ctx.identity.actor):
        raise Refused(404, "not_found")
    state = {"running": t("running"), "done": t("done"), "failed": t("import_failed")}[job.state]
    total = max(job.total_rows, 1)
    done = job.total_rows if job.state == "done" else job.rows_done
    summary = layout.table(
        [t("rows"), t("loaded"), t("existing"), t("rejected")],
        [(e(f"{done}/{job.total_rows}"), e(job.loaded), e(job.existing), e(job.rejected))],
    )
    message = layout.notice(job.message, "err") if job.message else ""
    rejects = layout.table(
        [t("line"), t("handle"), t("reason")],
        [(e(r.line), f"<code>{e(r.handle)}</code>", e(r.reason)) for r in job.rejects],
    )
    content = (
        f"<section><p>{e(job.file_name)} · {e(job.template)} · <b id=state>{e(state)}</b></p>"
        f'<label for="bar">{e(t("progress"))}</label>'
        f'<progress id="bar" max="{total}" value="{done}">{done}/{total}</progress>'
        f"{summary}</section>{message}"
        f"<section><h2>{e(t('rejects'))} ({e(job.rejected)})</h2>{rejects}</section>"
    )
    return layout.reply(
        layout.framed(
            ctx.page(request),
            f"{t('import_job')} {job.id}",
            content,
            refresh_s=1 if job.state == "running" else None,
        )
    )
