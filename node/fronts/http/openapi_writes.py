"""OpenAPI paths and schemas of the batch, template and CAICT-style endpoints
(``node.fronts.http.batches``, ``templates``, ``compat``), merged into the document by
``node.fronts.http.openapi``."""

from __future__ import annotations

from typing import Any

from node.fronts.http.openapi_parts import ADMIN_SECURITY, TEMPLATE_PROBLEM, Schema
from node.fronts.http.openapi_parts import ref as _ref

BEARER: list[dict[str, list[str]]] = [{"bearerToken": []}, *ADMIN_SECURITY]


def _json(schema: str | Schema, description: str) -> Schema:
    s = _ref(schema) if isinstance(schema, str) else schema
    return {"description": description, "content": {"application/json": {"schema": s}}}


def _errors(*statuses: int) -> dict[str, Schema]:
    out = {
        str(s): _json("ErrorReply", f"HTTP {s}: a Handle response code and a message")
        for s in statuses
    }
    out["default"] = _json("ErrorReply", "any other error")
    return out


ITEM_RESULT: Schema = {
    "type": "object",
    "required": ["item", "op", "handle", "responseCode", "status"],
    "additionalProperties": False,
    "properties": {
        "item": {"type": "integer", "minimum": 0},
        "op": {"type": "string"},
        "handle": {"type": "string"},
        "responseCode": {"type": "integer"},
        "status": {"type": "integer"},
        "message": {"type": "string"},
        "changed": {"type": "boolean"},
        "version": {"type": "integer"},
        "template": {"type": "string"},
        "problems": {"type": "array", "items": _ref("TemplateProblem")},
    },
}

# Atomic batches answer a failed item with the batch's reply; a bad request itself is
# an error reply.
EITHER: Schema = {"oneOf": [_ref("BatchReply"), _ref("ErrorReply")]}

BATCH_REPLY: Schema = {
    "type": "object",
    "required": ["responseCode", "mode", "total", "succeeded", "failed", "results"],
    "additionalProperties": False,
    "properties": {
        "responseCode": {"type": "integer"},
        "mode": {"enum": ["items", "atomic"]},
        "total": {"type": "integer"},
        "succeeded": {"type": "integer"},
        "failed": {"type": "integer"},
        "message": {"type": "string"},
        "results": {"type": "array", "items": _ref("BatchItemResult")},
    },
}

TEMPLATE: Schema = {
    "type": "object",
    "required": ["handle", "prefix", "version", "name", "industryCategory", "items"],
    "properties": {
        "responseCode": {"const": 1},
        "handle": {"type": "string"},
        "prefix": {"type": "string"},
        "version": {"type": "string"},
        "name": {"type": "string"},
        "industryCategory": {"type": "array"},
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["idType", "idIndex", "required", "metadata"],
                "properties": {
                    "idType": {"type": "string"},
                    "idIndex": {"type": "integer", "minimum": 2000},
                    "required": {"type": "boolean"},
                    "metadata": {"type": "object"},
                },
            },
        },
    },
}

COMPAT_REPLY: Schema = {
    "type": "object",
    "required": ["status", "message", "data"],
    "additionalProperties": False,
    "properties": {
        "status": {"enum": [1, -1, -2, -3, -4]},
        "message": {"type": "string"},
        "data": {},
    },
}

WRITES_SCHEMAS: dict[str, Schema] = {
    "TemplateProblem": TEMPLATE_PROBLEM,
    "BatchItemResult": ITEM_RESULT,
    "BatchReply": BATCH_REPLY,
    "Template": TEMPLATE,
    "TemplatesReply": {
        "type": "object",
        "required": ["responseCode", "templates", "next"],
        "additionalProperties": False,
        "properties": {
            "responseCode": {"const": 1},
            "templates": {"type": "array", "items": _ref("Template")},
            "next": {"type": ["string", "null"]},
        },
    },
    "CompatReply": COMPAT_REPLY,
}

BEARER_SCHEME: Schema = {
    "type": "http",
    "scheme": "bearer",
    "description": "a token from POST /identity/token (CAICT-style endpoints; 24 h)",
}


def _compat(summary: str, op_id: str, *, security: bool = True) -> Schema:
    return {
        "summary": summary,
        "operationId": op_id,
        **({"security": BEARER} if security else {}),
        "responses": {
            str(s): _json("CompatReply", d)
            for s, d in (
                (200, "status 1 ok, or -2 a business error"),
                (201, "created"),
                (400, "-2: bad input"),
                (401, "-1: not logged in"),
                (403, "-3: no permission"),
                (404, "-2: not found"),
                (409, "-2: exists with other content"),
                (413, "-2: too many records"),
                (500, "-4: internal error"),
                (503, "-4: registry unavailable"),
            )
        }
        | {"default": _json("CompatReply", "an error in the envelope")},
    }


def writes_paths() -> dict[str, Any]:
    return {
        "/api/batches": {
            "post": {
                "summary": "Up to batch_max_items creates, updates and deletes in one call",
                "operationId": "postBatch",
                "security": BEARER,
                "responses": {
                    "200": _json("BatchReply", "a result per item (items mode, or all succeeded)"),
                    "400": _json(EITHER, "a bad request, or (atomic) an invalid item"),
                    "403": _json(EITHER, "atomic: an item was not permitted"),
                    "404": _json(EITHER, "atomic: an item's handle does not exist"),
                    "409": _json(EITHER, "atomic: an item conflicts; nothing written"),
                    **_errors(401, 413, 429, 500, 503),
                },
            },
        },
        "/api/templates": {
            "get": {
                "summary": "Industry data templates held by this node",
                "operationId": "listTemplates",
                "responses": {"200": _json("TemplatesReply", "one page"), **_errors(400)},
            }
        },
        "/api/templates/{handle}": {
            "get": {
                "summary": "One data template",
                "parameters": [
                    {"name": "handle", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "operationId": "getTemplate",
                "responses": {"200": _json("Template", "the template"), **_errors(404)},
            }
        },
        "/snms/api/v5/template": {
            "get": _compat("Templates (CAICT-style)", "snmsTemplates", security=False)
        },
        "/identity/token": {
            "post": _compat("A bearer token (CAICT-style)", "compatToken", security=False)
        },
        "/identityv2/data/detail": {"get": _compat("One record (CAICT-style)", "compatDetail")},
        "/identityv2/data": {
            "post": _compat("Create a record (idempotent)", "compatCreate"),
            "put": _compat("Change values of a record", "compatUpdate"),
            "delete": _compat("Delete a record", "compatDelete"),
        },
        "/identityv2/data/batchCreate": {"post": _compat("Create records", "compatBatchCreate")},
        "/identityv2/data/batchUpdate": {"put": _compat("Change records", "compatBatchUpdate")},
        "/identityv2/data/batchDelete": {"delete": _compat("Delete records", "compatBatchDelete")},
    }
