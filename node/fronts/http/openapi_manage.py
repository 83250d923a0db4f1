"""The management API's part of the OpenAPI document (``node.fronts.http.manage``,
docs/enterprises.md): its paths and schemas, merged into ``openapi_document``.

Kept apart from ``openapi`` (the Handle REST API) because its replies differ in kind:
JSON only, errors included (no ``callback=``), and never cached.
"""

from __future__ import annotations

from typing import Any

from node.fronts.http.openapi_parts import ADMIN_SECURITY as SECURITY
from node.fronts.http.openapi_parts import Schema
from node.fronts.http.openapi_parts import ref as _ref

TIME: Schema = {"type": "string", "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$"}
STATUS: Schema = {
    "type": "integer",
    "minimum": 0,
    "maximum": 5,
    "description": "0 disabled, 1 enabled, 2 pending deletion, 3 rejected, 4 awaiting review, "
    "5 under review",
}


def _ok(properties: Schema) -> Schema:
    """A success reply: ``responseCode`` 1 and exactly these properties."""
    return {
        "type": "object",
        "required": ["responseCode", *properties],
        "additionalProperties": False,
        "properties": {"responseCode": {"const": 1}, **properties},
    }


MANAGE_SCHEMAS: dict[str, Schema] = {
    "ManageApplication": {
        "type": "object",
        "required": ["prefix", "status", "statusName", "enterprise", "createdAt", "updatedAt"],
        "additionalProperties": False,
        "properties": {
            "prefix": {"type": "string"},
            "status": STATUS,
            "statusName": {"type": "string"},
            "enterprise": {
                "type": "object",
                "required": ["creditCode", "name"],
                "additionalProperties": False,
                "properties": {"creditCode": {"type": "string"}, "name": {"type": "string"}},
            },
            "createdAt": TIME,
            "updatedAt": TIME,
        },
    },
    "ManageReview": {
        "type": "object",
        "description": "one recorded step of a prefix's lifecycle (append-only)",
        "required": [
            "id",
            "prefix",
            "action",
            "fromStatus",
            "toStatus",
            "toStatusName",
            "actor",
            "reason",
            "at",
        ],
        "additionalProperties": False,
        "properties": {
            "id": {"type": "integer"},
            "prefix": {"type": "string"},
            "action": {"enum": ["apply", "review", "operator"]},
            "fromStatus": {"oneOf": [STATUS, {"type": "null"}]},
            "toStatus": STATUS,
            "toStatusName": {"type": "string"},
            "actor": {"type": "string", "description": "index:handle, or cli:<os user>"},
            "reason": {"type": "string"},
            "at": TIME,
        },
    },
    "ManageEnterprise": {
        "type": "object",
        "required": ["id", "name", "creditCode", "contact", "status", "createdAt"],
        "additionalProperties": False,
        "properties": {
            "id": {"type": "integer"},
            "name": {"type": "string"},
            "creditCode": {"type": "string", "pattern": "^[0-9A-HJ-NPQRTUWXY]{18}$"},
            "contact": {"type": "string"},
            "status": {"enum": [0, 1], "description": "0 suspended, 1 active"},
            "createdAt": TIME,
        },
    },
    "ManageCredentials": {
        "type": "object",
        "description": "the new enterprise admin and its secret: in this reply only, never again",
        "required": ["prefix", "admin", "secret"],
        "additionalProperties": False,
        "properties": {
            "prefix": {"type": "string"},
            "admin": {"type": "string", "description": "300:<prefix>/ADMIN"},
            "secret": {"type": "string", "minLength": 32},
        },
    },
    "ManageApplicationsReply": _ok(
        {
            "totalCount": {"type": "integer", "minimum": 0},
            "applications": {"type": "array", "items": _ref("ManageApplication")},
        }
    ),
    "ManageApplicationReply": _ok({"application": _ref("ManageApplication")}),
    "ManageStepReply": {
        **_ok({"application": _ref("ManageApplication"), "review": _ref("ManageReview")}),
        "properties": {
            "responseCode": {"const": 1},
            "application": _ref("ManageApplication"),
            "review": _ref("ManageReview"),
            "credentials": _ref("ManageCredentials"),
        },
    },
    "ManageHistoryReply": _ok(
        {
            "prefix": {"type": "string"},
            "history": {"type": "array", "items": _ref("ManageReview")},
        }
    ),
    "ManageEnterprisesReply": _ok(
        {"enterprises": {"type": "array", "items": _ref("ManageEnterprise")}}
    ),
    "ManageEnterpriseReply": _ok({"enterprise": _ref("ManageEnterprise")}),
}


def _json(schema: str, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}


def _errors(*statuses: int) -> dict[str, Schema]:
    meaning = {
        400: "bad request: a field, a status or a prefix (RC 2xx/3xx codes; the message says)",
        401: "credentials missing or wrong (RC 402, 403; WWW-Authenticate)",
        403: "the caller's role does not allow it (RC 401)",
        404: "no such prefix or enterprise (RC 100)",
        409: "already registered, or a move the review rules refuse (names both statuses)",
        413: "body over 64 KiB",
        415: "body is not JSON",
        429: "too many failed authentications (Retry-After)",
        500: "the prefix was enabled but its admin identity could not be written (RC 2)",
        503: "registry unavailable (RC 3)",
    }
    out = {str(s): _json("ErrorReply", meaning[s]) for s in statuses}
    out["default"] = _json("ErrorReply", "any other error: a Handle response code and a message")
    return out


PRETTY: Schema = {
    "name": "pretty",
    "in": "query",
    "required": False,
    "description": "indent the JSON",
    "schema": {"type": "string"},
}
PREFIX_PARAM: Schema = {
    "name": "prefix",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "an enterprise prefix, e.g. 88.118.7",
}


def _body(required: list[str], properties: Schema) -> Schema:
    return {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"type": "object", "required": required, "properties": properties}
            }
        },
    }


def manage_paths() -> dict[str, Any]:
    read = _errors(400, 401, 403, 404, 429, 500, 503)
    apps = "/api/manage/applications"
    one = apps + "/{prefix}"
    return {
        apps: {
            "get": {
                "summary": "Prefix applications: all (platform admins, auditors) or the "
                "caller's enterprise's",
                "operationId": "manageListApplications",
                "security": SECURITY,
                "parameters": [
                    {**PRETTY, "name": "status", "description": "0-5 or a status name"},
                    {**PRETTY, "name": "enterprise", "description": "a credit code"},
                    PRETTY,
                ],
                "responses": {"200": _json("ManageApplicationsReply", "the applications"), **read},
            },
            "post": {
                "summary": "Apply for a prefix under one of this node's (awaiting review)",
                "operationId": "manageApply",
                "security": SECURITY,
                "parameters": [PRETTY],
                "requestBody": _body(
                    ["prefix"],
                    {
                        "prefix": {"type": "string"},
                        "creditCode": {
                            "type": "string",
                            "description": "the applying enterprise (default: the caller's)",
                        },
                        "reason": {"type": "string"},
                    },
                ),
                "responses": {
                    "201": _json("ManageStepReply", "applied"),
                    **_errors(400, 401, 403, 404, 409, 413, 415, 429, 500, 503),
                },
            },
        },
        one: {
            "parameters": [PREFIX_PARAM],
            "get": {
                "summary": "One application and its current status",
                "operationId": "manageGetApplication",
                "security": SECURITY,
                "parameters": [PRETTY],
                "responses": {"200": _json("ManageApplicationReply", "the application"), **read},
            },
        },
        one + "/reviews": {
            "parameters": [PREFIX_PARAM],
            "post": {
                "summary": "Review a prefix (auditors, platform admins); enabling it creates "
                "<prefix>/ADMIN and answers with its credentials, once",
                "operationId": "manageReview",
                "security": SECURITY,
                "parameters": [PRETTY],
                "requestBody": _body(
                    ["status"],
                    {
                        "status": {"oneOf": [STATUS, {"type": "string"}]},
                        "reason": {
                            "type": "string",
                            "description": "required to reject, disable or delete",
                        },
                    },
                ),
                "responses": {
                    "200": _json("ManageStepReply", "moved"),
                    **_errors(400, 401, 403, 404, 409, 413, 415, 429, 500, 503),
                },
            },
        },
        one + "/history": {
            "parameters": [PREFIX_PARAM],
            "get": {
                "summary": "Every recorded step of a prefix, oldest first",
                "operationId": "manageHistory",
                "security": SECURITY,
                "parameters": [PRETTY],
                "responses": {"200": _json("ManageHistoryReply", "the steps"), **read},
            },
        },
        "/api/manage/enterprises": {
            "get": {
                "summary": "Enterprises: all (platform admins, auditors) or the caller's own",
                "operationId": "manageListEnterprises",
                "security": SECURITY,
                "parameters": [PRETTY],
                "responses": {"200": _json("ManageEnterprisesReply", "the enterprises"), **read},
            },
            "post": {
                "summary": "Register an enterprise (platform admins)",
                "operationId": "manageAddEnterprise",
                "security": SECURITY,
                "parameters": [PRETTY],
                "requestBody": _body(
                    ["name", "creditCode"],
                    {
                        "name": {"type": "string"},
                        "creditCode": {"type": "string"},
                        "contact": {"type": "string"},
                    },
                ),
                "responses": {
                    "201": _json("ManageEnterpriseReply", "registered"),
                    **_errors(400, 401, 403, 409, 413, 415, 429, 500, 503),
                },
            },
        },
    }
