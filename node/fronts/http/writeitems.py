"""What the HTTP write endpoints share: a record given by field names, and one mapping
from every reason a write is refused to its Handle response code, HTTP status and
message (the REST API, the batch endpoint and the CAICT-style endpoints all answer
from it).

A record may be sent as Handle values (``[{"index", "type", "data"}]``) or, for records
following an industry data template, as ``{"template": "<handle>", "fields": {name:
value}}``: the node assigns the indexes from the template (docs/industry-data.md), so an
MES never hand-assigns them. A template violation names each field, value and rule, in
the message and as ``problems``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from node.auth import Denied
from node.fronts.http.errors import ApiError
from node.fronts.http.services import HttpServices
from node.writes.service import NotApplied, ValuesMissing
from protocol.codes import ResponseCode as RC
from protocol.errors import ValueFormatError
from protocol.templates import CITE_INDEX, TemplateViolation
from protocol.values import HandleValue
from registry.errors import (
    Conflict,
    DatabaseUnavailable,
    NotFound,
    RegistryError,
    UnknownPrefix,
)

MAX_FIELDS_PER_WRITE = 200


def problems_json(exc: TemplateViolation) -> list[dict[str, Any]]:
    return [
        {"field": p.key, "index": p.index, "value": p.value[:200], "rule": p.rule}
        for p in exc.problems
    ]


def write_error(exc: Exception, text: str | None, *, adding: bool = False) -> ApiError:
    """The ApiError for a refused write of handle ``text``. ``adding``: values were
    added to an existing record, so a conflict is RC 201 rather than 101."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, Denied):
        return ApiError(exc.response_code, exc.message, handle=text)
    if isinstance(exc, TemplateViolation):
        return ApiError(
            RC.INVALID_VALUE,
            exc.message,
            handle=text,
            details={"template": exc.template, "problems": problems_json(exc)},
        )
    if isinstance(exc, NotApplied):
        return ApiError(RC.ERROR, exc.message, handle=text, status=424)
    if isinstance(exc, Conflict):
        rc = RC.VALUE_ALREADY_EXISTS if adding else RC.HANDLE_ALREADY_EXISTS
        return ApiError(rc, exc.message, handle=text)
    if isinstance(exc, ValuesMissing):
        return ApiError(RC.VALUES_NOT_FOUND, exc.message, handle=text)
    if isinstance(exc, NotFound):
        return ApiError(RC.HANDLE_NOT_FOUND, exc.message, handle=text)
    if isinstance(exc, UnknownPrefix):
        return ApiError(RC.SERVER_NOT_RESP, exc.message, handle=text)
    if isinstance(exc, ValueFormatError):
        return ApiError(RC.INVALID_VALUE, exc.message, handle=text)
    if isinstance(exc, DatabaseUnavailable):
        return ApiError(RC.SERVER_TOO_BUSY, "the registry is unavailable; retry later", handle=text)
    if isinstance(exc, RegistryError):
        return ApiError(RC.INVALID_VALUE, exc.message, handle=text)
    raise exc


def is_field_write(body: Any) -> bool:
    return isinstance(body, dict) and "fields" in body


async def values_from_fields(
    svc: HttpServices, body: Mapping[str, Any], text: str
) -> list[HandleValue]:
    """The values of ``{"template": T, "fields": {...}}``: the TEMPLATE citation and one
    value per field, at the template's indexes."""
    name, fields = body.get("template"), body.get("fields")
    if not isinstance(name, str) or not name.strip():
        raise ApiError(
            RC.INVALID_VALUE, '"template" must name the data template (a handle)', handle=text
        )
    if not isinstance(fields, dict) or not fields or len(fields) > MAX_FIELDS_PER_WRITE:
        raise ApiError(
            RC.INVALID_VALUE,
            f'"fields" must be an object of 1 to {MAX_FIELDS_PER_WRITE} field names and values',
            handle=text,
        )
    catalog = svc.writes.templates
    template = await catalog.get(name.strip()) if catalog is not None else None
    if template is None:
        raise ApiError(
            RC.INVALID_VALUE, f"no such data template {name.strip()[:200]!r}", handle=text
        )
    try:
        return template.record(fields)
    except TemplateViolation as exc:
        raise write_error(exc, text) from None


def field_indexes(values: list[HandleValue]) -> frozenset[int]:
    """What a write by field names changes: those fields and the citation."""
    return frozenset({CITE_INDEX, *(v.index for v in values)})
