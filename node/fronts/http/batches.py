"""``POST /api/batches``: up to ``batch_max_items`` writes in one call (README "Batch
writes", docs/rest-api.md).

Body: ``{"mode": "items" | "atomic", "items": [...]}``; each item
``{"op": "create" | "put" | "update" | "delete", "handle": H, ...}`` with either
``"values"`` (Handle values) or ``"template"`` + ``"fields"`` (field names), and for
``delete`` optional ``"indexes"``:

- ``create``: a new handle; the same content again is success (a retried call after
  a timeout), other content a per-item 409 (RC 101).
- ``put``: create or replace the whole record (the REST API's PUT).
- ``update``: change the given values or fields of an existing handle, keep the rest.
- ``delete``: the handle, or only ``indexes``.

Every item is checked exactly as a single write would be (authorization, templates,
signing) and all are committed in one transaction (``WriteService.write_batch``).
``items`` mode: each item succeeds or fails on its own; the reply is 200 with a result
per item. ``atomic``: all or nothing; when any item fails, nothing is written, the
reply carries the first failure's status and each item's result (``424`` "not
applied" for the items that were fine).
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from node.auth import Authorizer, Identity
from node.fronts.http.app import Extension
from node.fronts.http.errors import ApiError
from node.fronts.http.reply import NO_STORE, Style, render
from node.fronts.http.services import HttpServices, services
from node.fronts.http.writeitems import field_indexes, values_from_fields, write_error
from node.writes.service import BatchItem, BatchOutcome, DeleteItem, NotApplied, PutItem
from protocol.codes import ResponseCode as RC
from protocol.errors import HandleSyntaxError, ValueFormatError
from protocol.handle import parse_handle
from protocol.jsonvalues import values_from_json
from protocol.values import HandleValue
from registry.rows import PutResult

OPS = ("create", "put", "update", "delete")
MODES = ("items", "atomic")
# A batch's body may be larger than one record's: at most this much per item.
MAX_BYTES_PER_ITEM = 8192


def batch_body_limit(svc: HttpServices) -> int:
    return max(svc.settings.http_max_body_bytes, svc.settings.batch_max_items * MAX_BYTES_PER_ITEM)


async def read_json_body(request: web.Request, limit: int) -> Any:
    """The JSON body, read up to ``limit`` bytes (this route's own bound, above the
    app-wide one)."""
    too_big = ApiError(RC.PROTOCOL_ERROR, f"request body exceeds {limit} bytes", status=413)
    if request.content_length is not None and request.content_length > limit:
        raise too_big
    chunks, size = [], 0
    try:
        async for chunk in request.content.iter_chunked(65536):
            size += len(chunk)
            if size > limit:
                raise too_big
            chunks.append(chunk)
    except ConnectionResetError:  # the client went away mid-body: nothing to answer
        raise ApiError(RC.PROTOCOL_ERROR, "the request body was cut off") from None
    try:
        return orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError as exc:
        raise ApiError(RC.PROTOCOL_ERROR, f"request body is not valid JSON: {exc}") from None


async def post_batch(request: web.Request) -> web.Response:
    svc = services(request)
    identity = await svc.require_identity(request, "a batch")
    body = await read_json_body(request, batch_body_limit(svc))
    if not isinstance(body, dict) or not isinstance(body.get("items"), list):
        raise ApiError(RC.PROTOCOL_ERROR, 'the body must be {"mode": ..., "items": [...]}')
    mode = body.get("mode", "items")
    if mode not in MODES:
        raise ApiError(RC.PROTOCOL_ERROR, f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    raw_items: list[Any] = body["items"]
    limit = svc.settings.batch_max_items
    if len(raw_items) > limit:
        raise ApiError(
            RC.PROTOCOL_ERROR,
            f"a batch holds at most {limit} items (batch_max_items), this one {len(raw_items)}",
            status=413,
        )
    if not raw_items:
        raise ApiError(RC.PROTOCOL_ERROR, "the batch holds no items")
    results = await run_batch(svc, identity, raw_items, atomic=mode == "atomic", source="batch")
    failed = [r for r in results if r["responseCode"] != RC.SUCCESS]
    reply: dict[str, Any] = {
        "responseCode": int(RC.SUCCESS) if not failed else int(failed[0]["responseCode"]),
        "mode": mode,
        "total": len(results),
        "succeeded": len(results) - len(failed),
        "failed": len(failed),
        "results": results,
    }
    status = 200
    if mode == "atomic" and failed:
        first = next(r for r in failed if r["status"] != 424)
        status = first["status"]
        reply["message"] = f"item {first['item']} failed: nothing was written"
    return render(reply, status=status, style=Style(), headers={"Cache-Control": NO_STORE})


async def run_batch(
    svc: HttpServices, identity: Identity, raw_items: list[Any], *, atomic: bool, source: str
) -> list[dict[str, Any]]:
    """Parse, check and commit the items; a result dict per item (``item`` its
    position, ``handle``, ``op``, ``responseCode``, ``status``, ``message`` on failure)."""
    authorizer = svc.authorizer.for_one_request()
    parsed: list[tuple[str, str, BatchItem | ApiError]] = [
        await _item(svc, authorizer, identity, n, raw) for n, raw in enumerate(raw_items)
    ]
    good = [(n, item) for n, (_, _, item) in enumerate(parsed) if not isinstance(item, ApiError)]
    outcomes: dict[int, BatchOutcome] = {}
    if good and not (atomic and len(good) != len(parsed)):
        done = await svc.writes.write_batch(
            [item for _, item in good],
            actor=identity.actor,
            now=svc.now(),
            source=source,
            atomic=atomic,
        )
        outcomes = {n: outcome for (n, _), outcome in zip(good, done, strict=True)}
    results = []
    for n, (op, text, item) in enumerate(parsed):
        if isinstance(item, ApiError):
            results.append(_failure(n, op, text, item))
            continue
        if n not in outcomes:  # atomic, and another item did not even parse
            outcomes[n] = NotApplied()
        outcome = outcomes[n]
        if isinstance(outcome, Exception):
            adding = isinstance(item, PutItem) and item.only_indexes is not None
            results.append(_failure(n, op, text, write_error(outcome, text, adding=adding)))
            continue
        result: dict[str, Any] = {
            "item": n,
            "op": op,
            "handle": text,
            "responseCode": int(RC.SUCCESS),
            "status": 200,
        }
        if isinstance(outcome, PutResult):
            result["status"] = 201 if outcome.created else 200
            result["changed"] = outcome.changed
            result["version"] = outcome.record.version
        results.append(result)
    return results


def _failure(n: int, op: str, text: str, err: ApiError) -> dict[str, Any]:
    out: dict[str, Any] = {
        "item": n,
        "op": op,
        "handle": text,
        "responseCode": err.response_code,
        "status": err.status,
        "message": err.message,
    }
    out.update(err.details)
    return out


async def _item(
    svc: HttpServices, authorizer: Authorizer, identity: Identity, n: int, raw: Any
) -> tuple[str, str, BatchItem | ApiError]:
    if not isinstance(raw, dict):
        return "", "", ApiError(RC.PROTOCOL_ERROR, f"item {n} is not a JSON object")
    op, text = raw.get("op"), raw.get("handle")
    if not isinstance(text, str) or not text:
        return str(op), "", ApiError(RC.INVALID_HANDLE, f"item {n} names no handle")
    if op not in OPS:
        return str(op), text, ApiError(RC.PROTOCOL_ERROR, f"op must be one of {', '.join(OPS)}")
    try:
        handle = parse_handle(text)
    except HandleSyntaxError as exc:
        return op, text, ApiError(RC.INVALID_HANDLE, exc.message, handle=text)
    try:
        if op == "delete":
            indexes = raw.get("indexes")
            if indexes is not None and (
                not isinstance(indexes, list)
                or not indexes
                or not all(isinstance(i, int) and 0 <= i < 2**32 for i in indexes)
            ):
                raise ApiError(RC.INVALID_VALUE, '"indexes" must be a list of value indexes')
            wanted = frozenset(indexes) if indexes else None

            async def authorize_delete(existing: Any) -> None:
                authorizer.refuse_node_records(handle)
                await authorizer.authorize_delete(identity, handle, existing, wanted)

            return op, text, DeleteItem(handle, wanted, authorize_delete)
        by_fields = "fields" in raw
        values = await _values(svc, raw, text, by_fields)
        only: frozenset[int] | None = None
        if op == "update":
            only = field_indexes(values) if by_fields else frozenset(v.index for v in values)
        overwrite = op != "create"
        partial = only is not None

        async def authorize_put(existing: Any, merged: tuple[HandleValue, ...]) -> None:
            await authorizer.authorize_put(
                identity, handle, existing, merged, overwrite=overwrite, partial=partial
            )

        item = PutItem(handle, tuple(values), overwrite, only, authorize_put)
        return op, text, item
    except ApiError as err:
        err.handle = text
        return op, text, err
    except ValueFormatError as exc:
        return op, text, write_error(exc, text)


async def _values(
    svc: HttpServices, raw: dict[str, Any], text: str, by_fields: bool
) -> list[HandleValue]:
    if by_fields:
        return await values_from_fields(svc, raw, text)
    values = raw.get("values")
    if not isinstance(values, list) or not values:
        raise ApiError(
            RC.INVALID_VALUE, 'an item needs "values" (Handle values) or "template" + "fields"'
        )
    return values_from_json(values)


def batch_routes() -> Extension:
    def extend(app: web.Application) -> None:
        app.router.add_post("/api/batches", post_batch, name="batch")

    return extend
