"""The history's part of the OpenAPI document (``node.fronts.http.history``,
docs/rest-api.md "History"): ``?at=`` on the resolution GET, ``/api/history/{handle}``
and their schemas, merged into ``openapi_document``."""

from __future__ import annotations

from typing import Any

from node.fronts.http.openapi_parts import ADMIN_SECURITY, Schema
from node.fronts.http.openapi_parts import ref as _ref
from registry.store import HISTORY_PAGE, MAX_HISTORY_PAGE

# RFC 3339 in UTC, as protocol.rfc3339.format_time writes it (fraction only when there is one).
TIME: Schema = {"type": "string", "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$"}
SIGNATURE: Schema = {
    "enum": ["valid", "invalid", "none", "unverified"],
    "description": "the version's HS_SIGNATURE checked against this node's trust roots, now: "
    "none = unsigned (or a deletion), unverified = this node has no trust root",
}
SECURITY: list[dict[str, list[str]]] = [{}, *ADMIN_SECURITY]  # {}: anonymous reads too


def _query(name: str, description: str, schema: Schema) -> Schema:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


AT_PARAM = _query(
    "at",
    "RFC 3339 time with an offset (2026-11-01T08:00:00Z): the record as it stood then, from "
    "the history (never the cache); 404 if it did not exist then. The reply adds at, version, "
    "writtenAt, signature and signatureDetail.",
    {"type": "string"},
)

# Added to ResolutionReply: present only in a reply to ?at=.
RECORD_AT_PROPERTIES: dict[str, Schema] = {
    "at": {**TIME, "description": "with ?at=: the time asked about"},
    "version": {"type": "integer", "minimum": 1, "description": "with ?at=: the version then"},
    "writtenAt": {**TIME, "description": "with ?at=: when that version was written"},
    "signature": SIGNATURE,
    "signatureDetail": {"type": "string"},
}

HISTORY_SCHEMAS: dict[str, Schema] = {
    "HistoryChange": {
        "type": "object",
        "required": ["index", "type", "change", "parts", "before", "after", "hidden", "summary"],
        "additionalProperties": False,
        "properties": {
            "index": {"type": "integer", "minimum": 0},
            "type": {"type": ["string", "null"], "description": "null: not readable"},
            "change": {"enum": ["added", "changed", "removed"]},
            "parts": {
                "type": "array",
                "items": {"enum": ["type", "data", "ttl", "permissions", "references"]},
            },
            "before": {
                "oneOf": [_ref("HandleValue"), {"type": "null"}],
                "description": "null when added, not readable, or an HS_SIGNATURE",
            },
            "after": {
                "oneOf": [_ref("HandleValue"), {"type": "null"}],
                "description": "null when removed, not readable, or an HS_SIGNATURE",
            },
            "hidden": {"type": "boolean", "description": "a side is not readable by the caller"},
            "summary": {"type": "string", "description": "one line, e.g. 'signature replaced'"},
        },
    },
    "HistoryVersion": {
        "type": "object",
        "required": [
            "version",
            "seq",
            "at",
            "action",
            "actor",
            "changes",
            "signature",
            "signatureDetail",
        ],
        "additionalProperties": False,
        "properties": {
            "version": {"type": "integer", "minimum": 1},
            "seq": {"type": "integer", "minimum": 1, "description": "paging cursor (before=)"},
            "at": TIME,
            "action": {"enum": ["create", "modify", "delete"]},
            "actor": {
                "type": ["string", "null"],
                "description": "who wrote it; null for anonymous callers",
            },
            "changes": {"type": "array", "items": _ref("HistoryChange")},
            "signature": SIGNATURE,
            "signatureDetail": {"type": "string"},
        },
    },
    "HistoryReply": {
        "type": "object",
        "required": ["responseCode", "handle", "versions"],
        "additionalProperties": False,
        "properties": {
            "responseCode": {"const": 1},
            "handle": {"type": "string"},
            "versions": {"type": "array", "items": _ref("HistoryVersion")},
            "next": {"type": "string", "description": "the next (older) page; absent at the start"},
        },
    },
}


def _reply(schema: str, description: str) -> Schema:
    return {
        "description": description,
        "content": {
            "application/json": {"schema": _ref(schema)},
            "application/javascript": {
                "schema": {"type": "string", "description": "with callback= (JSONP)"}
            },
        },
    }


def history_paths() -> dict[str, Any]:
    errors = {
        "400": _reply("ErrorReply", "bad parameter or handle (RC 4, 102, 301)"),
        "401": _reply("ErrorReply", "credentials wrong (RC 402, 403; WWW-Authenticate)"),
        "403": _reply("ErrorReply", "may not read the non-public values (RC 400); publicOnly"),
        "404": _reply("ErrorReply", "no history for this handle (RC 100)"),
        "429": _reply("ErrorReply", "too many failed authentications (Retry-After)"),
        "500": _reply("ErrorReply", "internal error (RC 2)"),
        "503": _reply("ErrorReply", "registry unavailable (RC 3)"),
        "default": _reply("ErrorReply", "any other error"),
    }
    return {
        "/api/history/{handle}": {
            "parameters": [
                {
                    "name": "handle",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string"},
                    "description": "PREFIX/SUFFIX, as in /api/handles/{handle}",
                }
            ],
            "get": {
                "summary": "A handle's versions, newest first, each with what changed",
                "operationId": "getHistory",
                "security": SECURITY,
                "parameters": [
                    _query(
                        "limit",
                        f"versions per page (default {HISTORY_PAGE})",
                        {"type": "integer", "minimum": 1, "maximum": MAX_HISTORY_PAGE},
                    ),
                    _query(
                        "before",
                        "only versions older than this seq (the next link sets it)",
                        {"type": "integer", "minimum": 1},
                    ),
                    _query(
                        "publicOnly",
                        "only public values' contents (default: true unless authenticated)",
                        {"type": "string"},
                    ),
                    _query("pretty", "indent the JSON", {"type": "string"}),
                    _query(
                        "callback", "JSONP: wrap the reply in this function", {"type": "string"}
                    ),
                ],
                "responses": {"200": _reply("HistoryReply", "one page of versions"), **errors},
            },
        }
    }
