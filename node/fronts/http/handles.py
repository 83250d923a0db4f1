"""``GET | PUT | DELETE /api/handles/{handle}``: the Handle.Net REST API on one handle.

The handle is taken from the raw request path and percent-decoded here (strict UTF-8),
so ``88.118.2/A%2FB`` and ``88.118.2/A/B`` name the same handle and a stray ``%FF``
is an invalid handle rather than a literal. Replies echo the handle as asked.
"""

from __future__ import annotations

import uuid
from time import perf_counter
from typing import Any
from urllib.parse import unquote_to_bytes

import orjson
from aiohttp import web

from node.auth import Denied, Identity
from node.fronts.http import params
from node.fronts.http.errors import ApiError, http_status
from node.fronts.http.history import get_handle_at
from node.fronts.http.hot import HotReply, if_none_match, shape_of, validated
from node.fronts.http.reply import (
    NO_STORE,
    Style,
    cache_control,
    cache_control_of,
    json_bytes,
    render,
)
from node.fronts.http.services import HttpServices, services
from node.fronts.http.writeitems import (
    field_indexes,
    is_field_write,
    values_from_fields,
    write_error,
)
from node.resolution.forward.build import count_forwarding
from node.resolution.outcomes import Found, PrefixReferral, Unverified, ValuesNotFound
from node.resolution.resolver import WireFound
from node.secrets.vault import SECKEY_TYPE, SHOWN
from protocol.codes import Permission, TTLType
from protocol.codes import ResponseCode as RC
from protocol.errors import HandleSyntaxError, ValueFormatError
from protocol.handle import Handle, normalise, parse_handle
from protocol.jsonvalues import values_from_json, values_to_json
from protocol.values import HandleValue
from protocol.wirejson import values_json
from protocol.wirescan import PERMISSIONS, TTL, TTL_TYPE
from registry.errors import RegistryError
from registry.recordrules import check_incoming

PATH_PREFIX = "/api/handles/"
SIGNATURE_HEADER = "X-Idnode-Signature"

# Plain ints: IntFlag arithmetic costs microseconds per value on the hot GET path.
PUBLIC_READ = int(Permission.PUBLIC_READ)
ADMIN_READ = int(Permission.ADMIN_READ)
JSON_CONTENT_TYPES = ("application/json", "text/json")


def handle_from_path(request: web.Request) -> str:
    tail = request.rel_url.raw_path[len(PATH_PREFIX) :]
    try:
        return unquote_to_bytes(tail).decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(
            RC.INVALID_HANDLE, "the handle in the path is not UTF-8 once percent-decoded"
        ) from None


def _parse(text: str) -> Handle:
    try:
        return parse_handle(text)
    except HandleSyntaxError as exc:
        raise ApiError(RC.INVALID_HANDLE, exc.message, handle=text) from None


# -- GET ---------------------------------------------------------------------------------


async def get_handle(request: web.Request) -> web.Response:
    # ?at=T: the record's past, from the history; never a kept reply (that is the present).
    if "at" in request.query_string and "at" in request.query:
        return await get_handle_at(request)
    svc = services(request)
    hot = svc.hot
    shape = shape_of(request) if hot is not None else None
    if shape is not None:
        assert hot is not None
        started = perf_counter()
        resp = hot.lookup(*shape, request.remote, if_none_match(request))
        if resp is not None:
            hot.stats.observe(perf_counter() - started)
            return resp
    style = Style.of(request)
    text = handle_from_path(request)
    q = request.query
    params.callback(q)
    indexes, types = params.indexes(q), params.types(q)
    refer = not params.flag(q, "doNotRefer")
    # "authoritative": answer from the registry itself, not from the cache.
    fresh = params.flag(q, "auth")
    params.flag(q, "cert")  # signed replies are not offered over HTTP; accepted and ignored
    identity = await svc.identity(request)
    # As the reference: public values only unless the caller authenticated (and did
    # not ask for publicOnly); anonymous callers never get more.
    public_only = params.flag(q, "publicOnly", identity is None) or identity is None
    now = svc.clock()
    forward = svc.may_recurse(request.remote)
    result = await svc.resolver.resolve(
        text,
        indexes,
        types,
        now,
        public_only=False,
        refer=refer,
        fresh=fresh,
        forward=forward,
        # Anonymous: public values only, whoever asks; the JSON is built from the stored
        # bytes (resolver.WireFound, protocol.wirejson), not from decoded values.
        wire=identity is None,
    )
    if svc.recursion is not None:
        count_forwarding(svc.metrics, "http", result, forward)
    private_reply = identity is not None
    match result:
        case WireFound(entry=entry) | Found(entry=entry):
            verdict = None
            if isinstance(result, WireFound):
                count, shown_json, timings = wire_values(result)
            else:
                verdict = result.signature
                values = await _readable(svc, identity, text, result.values, public_only)
                count = len(values)
                shown_json = values_to_json(values)
                timings = [(int(v.ttl_type), v.ttl) for v in values]
                private_reply = private_reply or any(
                    not v.permissions & PUBLIC_READ for v in values
                )
            rc, body = found_body(text, count, shown_json, public_only)
            cc = cache_control_of(timings, now, private=private_reply)
            status = http_status(rc, resolution=True)
            # A record from upstream says how its signature checked (forward_signatures).
            extra = {SIGNATURE_HEADER: verdict} if verdict is not None else None
            encoded = None
            if shape is not None and entry is not None and keepable(private_reply, timings):
                assert hot is not None
                encoded = json_bytes(body, style)  # kept, and sent: encoded once
                reply = HotReply(status, int(rc), encoded, cc, extra)
                hot.keep(shape[0], entry, reply)
            return validated(
                request,
                render(
                    body,
                    status=status,
                    style=style,
                    headers={"Cache-Control": cc, **(extra or {})},
                    encoded=encoded,
                ),
            )
        case ValuesNotFound(entry=entry):
            body = {
                "responseCode": int(result.response_code),
                "handle": text,
                "values": [],
                "message": result.message,
            }
            cc = cache_control((), now, private=private_reply)
            if shape is not None and entry is not None and not private_reply:
                assert hot is not None
                hot.keep(
                    shape[0],
                    entry,
                    HotReply(200, int(RC.VALUES_NOT_FOUND), json_bytes(body, style), cc),
                )
            return validated(
                request, render(body, status=200, style=style, headers={"Cache-Control": cc})
            )
        case PrefixReferral(values=referral):
            body = {
                "responseCode": int(result.response_code),
                "handle": text,
                "values": values_to_json(referral),
                "message": result.message,
            }
            return render(body, status=300, style=style, headers={"Cache-Control": NO_STORE})
        case Unverified():
            # What upstream sent does not verify: a bad gateway, not our error.
            raise ApiError(result.response_code, result.message, handle=text, status=502)
        case _:
            raise ApiError(result.response_code, result.message, handle=text)


def wire_values(result: WireFound) -> tuple[int, list[Any], list[tuple[int, int]]]:
    """(how many, their JSON, their (TTL type, TTL)) of the public values of a record
    answered in wire form: what an anonymous caller is shown."""
    kept = result.selected
    spans = [s for s in kept.spans if s[PERMISSIONS] & PUBLIC_READ]
    shown = values_json(kept.source, spans, redact_type=SECKEY_TYPE, redacted=SHOWN)
    return len(spans), shown, [(s[TTL_TYPE], s[TTL]) for s in spans]


def found_body(
    text: str, count: int, shown_json: list[Any], public_only: bool
) -> tuple[RC, dict[str, Any]]:
    """The response code and JSON body of a resolution that found the record."""
    rc = RC.SUCCESS if count else RC.VALUES_NOT_FOUND
    body: dict[str, Any] = {"responseCode": int(rc), "handle": text, "values": shown_json}
    if not count:
        body["message"] = "no values match the request" + (
            " (public values only)" if public_only else ""
        )
    return rc, body


def keepable(private: bool, timings: list[tuple[int, int]]) -> bool:
    """Whether such a reply may be kept for anonymous requests: no value hidden from
    some callers, and no absolute TTL (its Cache-Control max-age counts down)."""
    return not private and not any(ttl_type == TTLType.ABSOLUTE for ttl_type, _ in timings)


async def _readable(
    svc: HttpServices,
    identity: Identity | None,
    text: str,
    values: tuple[HandleValue, ...],
    public_only: bool,
) -> list[HandleValue]:
    try:
        return await svc.authorizer.readable(identity, text, values, public_only=public_only)
    except Denied as exc:
        raise ApiError(
            exc.response_code,
            exc.message + " (add publicOnly=true for the public values)",
            handle=text,
        ) from None


# -- PUT ---------------------------------------------------------------------------------


async def _read_json(request: web.Request, limit: int) -> Any:
    ctype = request.headers.get("Content-Type")
    if ctype is not None:
        base = ctype.split(";", 1)[0].strip().lower()
        if base not in JSON_CONTENT_TYPES and not base.endswith("+json"):
            raise ApiError(
                RC.PROTOCOL_ERROR,
                f"unsupported Content-Type {base!r}: send application/json",
                status=415,
            )
    too_big = ApiError(
        RC.PROTOCOL_ERROR, f"request body exceeds {limit} bytes (http_max_body_bytes)", status=413
    )
    if request.content_length is not None and request.content_length > limit:
        raise too_big
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise too_big from None
    if not raw.strip():
        raise ApiError(
            RC.PROTOCOL_ERROR, "request body is empty: send a JSON array of handle values"
        )
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(RC.PROTOCOL_ERROR, f"request body is not valid JSON: {exc}") from None


def _values_in_body(body: Any, text: str, *, check_handle: bool) -> list[HandleValue]:
    """An array of values, ``{"values": [...]}`` (its "handle", if any, must match the
    path) or one value object, as the reference accepts."""
    if isinstance(body, dict):
        if "values" in body:
            named = body.get("handle")
            if (
                check_handle
                and named is not None
                and (not isinstance(named, str) or normalise(named) != normalise(text))
            ):
                raise ApiError(
                    RC.PROTOCOL_ERROR,
                    f"the body names handle {str(named)[:80]!r}, the path {text!r}",
                    handle=text,
                )
        elif not {"index", "type", "data"} <= body.keys():
            raise ApiError(
                RC.PROTOCOL_ERROR,
                'a JSON object body must be {"values": [...]} or one value with index, type and data',
                handle=text,
            )
    elif not isinstance(body, list):
        raise ApiError(
            RC.PROTOCOL_ERROR, "the body must be a JSON array of handle values", handle=text
        )
    try:
        values = values_from_json(body)
        check_incoming(values)  # the rules every write path applies (registry.recordrules)
        return values
    except ValueFormatError as exc:
        raise ApiError(RC.INVALID_VALUE, exc.message, handle=text) from None


def _mint(base: str) -> str:
    """The reference's HandleSuffixMinter: the path up to here plus a random UUID."""
    if "/" not in base:
        base += "/"
    return base + str(uuid.uuid4())


async def put_handle(request: web.Request) -> web.Response:
    svc = services(request)
    text = handle_from_path(request)
    q = request.query
    params.callback(q)
    overwrite = params.flag(q, "overwrite", True)
    mint = params.flag(q, "mintNewSuffix")
    wanted = params.indexes_or_various(q)
    identity = await svc.require_identity(request, "PUT")
    body = await _read_json(request, svc.settings.http_max_body_bytes)
    by_fields = is_field_write(body)
    if by_fields:  # {"template", "fields"}: the changed fields, the rest kept
        values = await values_from_fields(svc, body, text)
    else:
        values = _values_in_body(body, text, check_handle=not mint)
    if mint:
        overwrite = False  # a minted handle is new by construction: never overwrite
        text = _mint(text)
    handle = _parse(text)
    given = {v.index for v in values}
    if by_fields:
        if wanted:
            raise ApiError(
                RC.INVALID_VALUE, "index= does not go with a write by field names", handle=text
            )
        only: frozenset[int] | None = field_indexes(values)
    elif wanted == "various":
        only = frozenset(given)
    elif wanted:
        if set(wanted) != given:
            raise ApiError(
                RC.INVALID_VALUE,
                f"index= names {sorted(wanted)} but the body holds {sorted(given)}",
                handle=text,
            )
        only = frozenset(wanted)
    else:
        only = None

    async def authorize(existing: Any, merged: tuple[HandleValue, ...]) -> None:
        await svc.authorizer.authorize_put(
            identity, handle, existing, merged, overwrite=overwrite, partial=only is not None
        )

    try:
        await svc.writes.put(
            handle,
            values,
            actor=identity.actor,
            now=svc.now(),
            source="http",
            overwrite=overwrite,
            only_indexes=only,
            authorize=authorize,
            create_missing=by_fields,
        )
    except (Denied, RegistryError, ValueFormatError) as exc:
        raise write_error(exc, text, adding=only is not None and not by_fields) from None
    status = http_status(RC.SUCCESS, created=not overwrite)
    return render(
        {"responseCode": 1, "handle": text},
        status=status,
        style=Style.of(request),
        headers={"Cache-Control": NO_STORE},
    )


# -- DELETE ------------------------------------------------------------------------------


async def delete_handle(request: web.Request) -> web.Response:
    svc = services(request)
    text = handle_from_path(request)
    q = request.query
    params.callback(q)
    wanted = params.indexes(q)
    handle = _parse(text)
    identity = await svc.require_identity(request, "DELETE")
    try:
        svc.authorizer.refuse_node_records(handle)  # before "does not exist": it does, built in
    except Denied as exc:
        raise ApiError(exc.response_code, exc.message, handle=text) from None
    indexes = frozenset(wanted) if wanted else None

    async def authorize(existing: Any) -> None:
        await svc.authorizer.authorize_delete(identity, handle, existing, indexes)

    try:
        await svc.writes.delete(
            handle,
            actor=identity.actor,
            now=svc.now(),
            source="http",
            indexes=indexes,
            authorize=authorize,
        )
    except (Denied, RegistryError, ValueFormatError) as exc:
        raise write_error(exc, text) from None
    return render(
        {"responseCode": 1, "handle": text},
        status=200,
        style=Style.of(request),
        headers={"Cache-Control": NO_STORE},
    )
