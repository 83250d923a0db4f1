"""OpenAPI path of the streaming import (``node.fronts.http.imports``, docs/import.md),
merged into the document by ``node.fronts.http.openapi``.

Its success is a stream of NDJSON lines, each one of the objects below, told apart by
``type``; its refusals before the stream starts are ordinary JSON ErrorReply bodies.
"""

from __future__ import annotations

from typing import Any

from node.fronts.http.openapi_parts import ADMIN_SECURITY as SECURITY
from node.fronts.http.openapi_parts import TEMPLATE_PROBLEM, Schema

COUNT: Schema = {"type": "integer", "minimum": 0}
TOTALS: Schema = {"loaded": COUNT, "existing": COUNT, "rejected": COUNT}


def _line(
    kind: str, description: str, properties: Schema, optional: tuple[str, ...] = ()
) -> Schema:
    return {
        "type": "object",
        "description": description,
        "required": ["type", *(p for p in properties if p not in optional)],
        "additionalProperties": False,
        "properties": {"type": {"const": kind}, **properties},
    }


IMPORT_LINE: Schema = {
    "oneOf": [
        _line(
            "rejected",
            "a refused row: its line in the body, its handle and why (with every field "
            "problem when it broke its template)",
            {
                "line": COUNT,
                "handle": {"type": "string"},
                "reason": {"type": "string"},
                "problems": {"type": "array", "items": TEMPLATE_PROBLEM},
            },
            optional=("problems",),
        ),
        _line(
            "progress",
            "a chunk committed (import_chunk_rows rows): the job's totals so far",
            {"throughLine": COUNT, "rows": COUNT, **TOTALS},
        ),
        _line(
            "summary",
            "the last line: the job's totals and this call's share",
            {
                "job": {"type": "string"},
                "state": {"enum": ["running", "done"]},
                "resumed": {"type": "boolean"},
                "resumedAfterLine": COUNT,
                "throughLine": COUNT,
                **TOTALS,
                "thisRun": {"type": "object", "properties": {"rows": COUNT, **TOTALS}},
                "seconds": {"type": "number"},
                "rate": {"type": ["number", "null"]},
            },
        ),
        _line(
            "error",
            "the import stopped (the body grew past import_max_bytes, a line too long, the "
            "registry unavailable); committed chunks stay: send the body again with the "
            "same job= to resume",
            {"job": {"type": "string"}, "message": {"type": "string"}},
        ),
    ]
}


def _errors(*statuses: int) -> dict[str, Schema]:
    reply = {"$ref": "#/components/schemas/ErrorReply"}
    out = {
        str(s): {
            "description": f"HTTP {s}: a Handle response code and a message",
            "content": {"application/json": {"schema": reply}},
        }
        for s in statuses
    }
    out["default"] = {
        "description": "any other error",
        "content": {"application/json": {"schema": reply}},
    }
    return out


def imports_paths() -> dict[str, Any]:
    return {
        "/api/imports": {
            "post": {
                "summary": "Import records in bulk: NDJSON in, results streamed back",
                "description": "One record per line: {handle, template, fields} (fields by "
                "name), {handle, values} (Handle.Net JSON values) or both. Rows go in only "
                "under prefixes the caller holds ADD_HANDLE on; existing handles are "
                "compared, never overwritten. Committed chunks survive an interruption: "
                "send the same body with the same job= to resume (docs/import.md).",
                "operationId": "postImport",
                "security": SECURITY,
                "parameters": [
                    {
                        "name": "job",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,100}$"},
                        "description": "a job id to start or resume (default: a new one)",
                    },
                    {
                        "name": "template",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string"},
                        "description": "the template of lines giving fields without one",
                    },
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/x-ndjson": {
                            "schema": {"type": "string", "description": "one JSON object a line"}
                        }
                    },
                },
                "responses": {
                    "200": {
                        "description": "a stream of NDJSON lines, each one of these",
                        "content": {"application/x-ndjson": {"schema": IMPORT_LINE}},
                    },
                    **_errors(400, 401, 403, 409, 413, 415, 429, 500, 503),
                },
            }
        }
    }
