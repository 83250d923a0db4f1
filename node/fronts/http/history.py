"""A record's past: ``GET /api/handles/{handle}?at=T`` and ``GET /api/history/{handle}``
(docs/rest-api.md "History").

Both read the registry's append-only ``handle_history`` (never the resolution cache:
a kept reply is the record *now*). ``?at=`` answers the record as it stood at T in the
shape of a normal GET, plus ``at``, ``version`` and ``writtenAt``. ``/api/history``
lists versions newest first, each with what changed since the one before it
(``protocol.recorddiff``), in pages (``limit``, ``before``). History is not under
``/api/handles/{handle}/history``: a handle may itself end in ``/history``.

Reading the past needs the same rights as reading the present: anonymous callers see
public values only; admin-readable ones need READ_VALUE on the handle (checked by the
``Authorizer`` against the handle's current HS_ADMIN, as a GET is). In the history a
value the caller may not read still shows *that* it changed, never its type or content,
and the actor of each write is shown to authenticated callers only (an operator's login
name is not public data). Secrets stay masked whoever asks (``node.secrets.vault``).

Each version carrying an HS_SIGNATURE is verified as the record page verifies the
current record (``page.signature``): against the node's trust roots, with certificates
from the node's own ``0.NA/<prefix>`` records, at the current time: "valid", "invalid"
(why), "none" (unsigned) or "unverified" (this node has no trust root).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote_to_bytes

from aiohttp import web

from node.auth import Denied, Identity
from node.fronts.http import params
from node.fronts.http.errors import ApiError
from node.fronts.http.page.signature import reasons
from node.fronts.http.reply import NO_STORE, Style, render
from node.fronts.http.services import HttpServices, services
from node.resolution.outcomes import Found
from node.secrets.vault import shown
from node.signing.trust import Fetch, collect_certs
from protocol.codes import Permission
from protocol.codes import ResponseCode as RC
from protocol.errors import HandleSyntaxError
from protocol.handle import Handle, parse_handle
from protocol.jsonvalues import values_to_json
from protocol.keys import PublicKey
from protocol.recorddiff import Visible, diff_to_json, diff_values, everything
from protocol.recordsig import is_signature, verify_record
from protocol.rfc3339 import format_time, parse_time
from protocol.values import HandleValue, select_values
from registry.rows import HistoryPage, LoggedEntry
from registry.store import HISTORY_PAGE, MAX_HISTORY_PAGE

if TYPE_CHECKING:
    from node.fronts.http.app import Extension

HANDLES_PATH = "/api/handles/"
HISTORY_PATH = "/api/history/"
MAX_CURSOR = 2**63 - 1  # history entry numbers are PostgreSQL bigints
ADMIN_READ = int(Permission.ADMIN_READ)


# -- signature verdicts (shared with ``idnode handle history``) ---------------------------


@dataclass(frozen=True, slots=True)
class Verdict:
    status: str  # "valid" | "invalid" | "none" | "unverified"
    detail: str  # "valid (signed by 400:0.NA/88.118)", "invalid: <why>", "unsigned", ...

    def to_json(self) -> dict[str, str]:
        return {"signature": self.status, "signatureDetail": self.detail}


UNSIGNED = Verdict("none", "unsigned")
DELETED = Verdict("none", "no record (deleted)")


async def signature_verdict(
    handle: str,
    values: Sequence[HandleValue],
    fetch: Fetch,
    roots: Sequence[PublicKey],
    now: int,
) -> Verdict:
    """How one version's HS_SIGNATURE checks against ``roots`` at ``now`` (unix seconds),
    with the certificates ``fetch`` finds (``node.signing.trust.collect_certs``)."""
    if not any(is_signature(v) for v in values):
        return UNSIGNED
    if not roots:
        return Verdict("unverified", "unverified: no trust root on this node (trust_root_file)")
    certs = await collect_certs(tuple(values), fetch)
    report = verify_record(handle, values, certs=certs, roots=roots, now=now)
    if report.ok:
        return Verdict("valid", f"valid (signed by {report.signer})")
    return Verdict("invalid", f"invalid: {reasons(report)}")


def version_json(
    logged: LoggedEntry,
    verdict: Verdict,
    *,
    visible: Visible = everything,
    show_actor: bool = True,
) -> dict[str, Any]:
    """One version with its changes since the previous one: ``{version, seq, at,
    action, actor, changes, signature, signatureDetail}``. ``visible(value)``: whether
    the reader may see a value's content (default: every value)."""
    e = logged.entry
    changes = diff_values(e.old_values or (), e.new_values or ())
    return {
        "version": e.version,
        "seq": logged.seq,
        "at": format_time(e.at),
        "action": e.action,
        "actor": e.actor if show_actor else None,
        "changes": diff_to_json(changes, visible=visible, show=shown),
        **verdict.to_json(),
    }


# -- request pieces -------------------------------------------------------------------------


def _handle_in_path(request: web.Request, prefix: str) -> str:
    """As ``handles.handle_from_path``: raw path, percent-decoded as strict UTF-8."""
    tail = request.rel_url.raw_path[len(prefix) :]
    try:
        return unquote_to_bytes(tail).decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(
            RC.INVALID_HANDLE, "the handle in the path is not UTF-8 once percent-decoded"
        ) from None


def _served(svc: HttpServices, text: str) -> Handle:
    try:
        handle = parse_handle(text)
    except HandleSyntaxError as exc:
        raise ApiError(RC.INVALID_HANDLE, exc.message, handle=text) from None
    prefix = handle.owning_prefix
    if not svc.resolver.served.serves(prefix):
        raise ApiError(RC.SERVER_NOT_RESP, svc.resolver.served.why_not_served(prefix), handle=text)
    return handle


def _time(query: params.Query) -> datetime:
    raw = query.get("at", "")
    try:
        return parse_time(raw)
    except ValueError as exc:
        raise ApiError(RC.PROTOCOL_ERROR, f"parameter at: {exc}") from None


def _fetcher(svc: HttpServices, request: web.Request, now: float) -> Fetch:
    """Certificate records through the node's resolver (as the record page fetches them),
    each looked up once per request however many versions name it."""
    forward = svc.may_recurse(request.remote)
    seen: dict[str, tuple[HandleValue, ...] | None] = {}

    async def fetch(name: str) -> tuple[HandleValue, ...] | None:
        if name not in seen:
            found = await svc.resolver.resolve(name, (), (), now, public_only=True, forward=forward)
            seen[name] = found.values if isinstance(found, Found) else None
        return seen[name]

    return fetch


def _denied(exc: Denied, text: str) -> ApiError:
    return ApiError(
        exc.response_code,
        exc.message + " (add publicOnly=true for the public values)",
        handle=text,
    )


async def _readable(
    svc: HttpServices,
    identity: Identity | None,
    text: str,
    values: Sequence[HandleValue],
    public_only: bool,
) -> list[HandleValue]:
    try:
        return await svc.authorizer.readable(identity, text, values, public_only=public_only)
    except Denied as exc:
        raise _denied(exc, text) from None


def _public_only(query: params.Query, identity: Identity | None) -> bool:
    """As a GET: public values only unless the caller authenticated (and did not ask
    for publicOnly)."""
    return params.flag(query, "publicOnly", identity is None) or identity is None


# -- GET /api/handles/{handle}?at=T -----------------------------------------------------


async def get_handle_at(request: web.Request) -> web.Response:
    """The record as it stood at ``at``: 404 (RC 100) when it did not exist then."""
    svc = services(request)
    text = _handle_in_path(request, HANDLES_PATH)
    q = request.query
    params.callback(q)
    at = _time(q)
    indexes, types = params.indexes(q), params.types(q)
    for accepted in ("auth", "cert", "doNotRefer"):  # history is always the registry's own
        params.flag(q, accepted)
    handle = _served(svc, text)
    identity = await svc.identity(request)
    public_only = _public_only(q, identity)
    record = await svc.resolver.registry.record_at(handle, at)
    if record is None:
        raise ApiError(
            RC.HANDLE_NOT_FOUND, f"handle {text} did not exist at {format_time(at)}", handle=text
        )
    readable = await _readable(svc, identity, text, record.values, public_only)
    values = [shown(v) for v in select_values(readable, indexes, types)]
    now = svc.clock()
    verdict = await signature_verdict(
        record.handle, record.values, _fetcher(svc, request, now), svc.trust_roots, int(now)
    )
    body: dict[str, Any] = {
        "responseCode": int(RC.SUCCESS if values else RC.VALUES_NOT_FOUND),
        "handle": text,
        "values": values_to_json(values),
        "at": format_time(at),
        "version": record.version,
        "writtenAt": format_time(record.written_at),
        **verdict.to_json(),
    }
    if not values:
        body["message"] = "no values match the request" + (
            " (public values only)" if public_only else ""
        )
    return render(body, status=200, style=Style.of(request), headers={"Cache-Control": NO_STORE})


# -- GET /api/history/{handle} ----------------------------------------------------------


async def _may_read_private(
    svc: HttpServices, identity: Identity | None, text: str, page: HistoryPage, public_only: bool
) -> bool:
    """Whether the admin-readable values of these versions may be shown: asked once for
    the page, with the Authorizer's rule for a GET (403 for an authenticated caller
    without READ_VALUE, unless publicOnly)."""
    private = [
        v
        for logged in page.entries
        for values in (logged.entry.old_values, logged.entry.new_values)
        for v in values or ()
        if not v.public_read and v.permissions & ADMIN_READ
    ]
    if not private or public_only:
        return False
    await _readable(svc, identity, text, private, public_only=False)
    return True


async def get_history(request: web.Request) -> web.Response:
    svc = services(request)
    text = _handle_in_path(request, HISTORY_PATH)
    q = request.query
    params.callback(q)
    limit = params.integer(q, "limit", low=1, high=MAX_HISTORY_PAGE) or HISTORY_PAGE
    before = params.integer(q, "before", low=1, high=MAX_CURSOR)
    handle = _served(svc, text)
    identity = await svc.identity(request)
    public_only = _public_only(q, identity)
    page = await svc.resolver.registry.history_page(handle, limit=limit, before=before)
    if not page.entries and before is None:
        raise ApiError(RC.HANDLE_NOT_FOUND, f"handle {text} has no history here", handle=text)
    private = await _may_read_private(svc, identity, text, page, public_only)

    def visible(v: HandleValue) -> bool:
        return v.public_read or (private and bool(v.permissions & ADMIN_READ))

    now = svc.clock()
    fetch = _fetcher(svc, request, now)
    versions = []
    for logged in page.entries:
        e = logged.entry
        verdict = (
            DELETED
            if e.new_values is None
            else await signature_verdict(e.handle, e.new_values, fetch, svc.trust_roots, int(now))
        )
        versions.append(
            version_json(logged, verdict, visible=visible, show_actor=identity is not None)
        )
    body: dict[str, Any] = {"responseCode": 1, "handle": text, "versions": versions}
    if page.older is not None:
        body["next"] = f"{HISTORY_PATH}{quote(text, safe='/')}?limit={limit}&before={page.older}"
    return render(body, status=200, style=Style.of(request), headers={"Cache-Control": NO_STORE})


def history_routes() -> Extension:
    """The ``http_app`` extension serving ``/api/history/{handle}`` (``?at=`` is served by
    the resolution route, which hands it to ``get_handle_at``)."""

    def extend(app: web.Application) -> None:
        app.router.add_get(HISTORY_PATH + "{handle:.+}", get_history, name="history")

    return extend
