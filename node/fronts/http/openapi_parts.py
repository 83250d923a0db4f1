"""What every part of the OpenAPI document shares (``openapi`` and the parts it merges:
``openapi_manage``, ``openapi_history``, ``openapi_writes``, ``openapi_imports``)."""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

# The schemes that authenticate an admin (docs/rest-api.md), in the order offered.
ADMIN_SECURITY: list[dict[str, list[str]]] = [
    {"basicAuth": []},
    {"handleSession": []},
    {"clientCert": []},
]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


# One thing wrong with one field of a record that cites a template (protocol.templates).
TEMPLATE_PROBLEM: Schema = {
    "type": "object",
    "required": ["field", "index", "value", "rule"],
    "additionalProperties": False,
    "properties": {
        "field": {"type": "string"},
        "index": {"type": "integer"},
        "value": {"type": "string"},
        "rule": {"type": "string"},
    },
}
