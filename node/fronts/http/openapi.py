"""The OpenAPI 3.1 description of the REST API, served at ``/api/openapi.json``.

Tests validate real replies of every endpoint (successes and errors) against the
schemas here, so this document cannot drift from what the node sends.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import orjson

from node import __version__
from node.fronts.http.openapi_history import (
    AT_PARAM,
    HISTORY_SCHEMAS,
    RECORD_AT_PROPERTIES,
    history_paths,
)
from node.fronts.http.openapi_imports import imports_paths
from node.fronts.http.openapi_manage import MANAGE_SCHEMAS, manage_paths
from node.fronts.http.openapi_parts import ADMIN_SECURITY, Schema
from node.fronts.http.openapi_parts import ref as _ref
from node.fronts.http.openapi_writes import BEARER_SCHEME, WRITES_SCHEMAS, writes_paths
from registry.store import SEARCH_COUNT_BOUND

U32: Schema = {"type": "integer", "minimum": 0, "maximum": 4294967295}
TIMESTAMP: Schema = {"type": "string", "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$"}
REFERENCE: Schema = {
    "type": "object",
    "required": ["handle", "index"],
    "additionalProperties": False,
    "properties": {"handle": {"type": "string"}, "index": U32},
}


def _data(fmt: str, value: Schema) -> Schema:
    return {
        "type": "object",
        "required": ["format", "value"],
        "additionalProperties": False,
        "properties": {"format": {"const": fmt}, "value": value},
    }


SITE: Schema = {
    "type": "object",
    "required": [
        "version",
        "protocolVersion",
        "serialNumber",
        "primarySite",
        "multiPrimary",
        "attributes",
        "servers",
    ],
    "properties": {
        "version": {"type": "integer"},
        "protocolVersion": {"type": "string"},
        "serialNumber": {"type": "integer"},
        "primarySite": {"type": "boolean"},
        "multiPrimary": {"type": "boolean"},
        "hashOption": {"type": "integer"},
        "hashFilter": {"type": "string"},
        "attributes": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "value"],
                "properties": {"name": {"type": "string"}, "value": {"type": "string"}},
            },
        },
        "servers": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["serverId", "address", "publicKey", "interfaces"],
                "properties": {
                    "serverId": U32,
                    "address": {"type": "string"},
                    "publicKey": {"type": "object", "required": ["format", "value"]},
                    "interfaces": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["query", "admin", "protocol", "port"],
                            "properties": {
                                "query": {"type": "boolean"},
                                "admin": {"type": "boolean"},
                                "protocol": {"type": ["string", "integer"]},
                                "port": U32,
                            },
                        },
                    },
                },
            },
        },
    },
}

SCHEMAS: dict[str, Schema] = {
    "Reference": REFERENCE,
    "Data": {
        "description": "A value's bytes: string (UTF-8 text), base64, hex, or a structured "
        "form for HS_ADMIN (admin), HS_VLIST (vlist), HS_SITE (site), HS_PUBKEY (key).",
        "oneOf": [
            _data("string", {"type": "string"}),
            _data("base64", {"type": "string", "pattern": r"^[A-Za-z0-9+/]*={0,2}$"}),
            _data("hex", {"type": "string", "pattern": "^[0-9a-fA-F]*$"}),
            _data(
                "admin",
                {
                    "type": "object",
                    "required": ["handle", "index", "permissions"],
                    "properties": {
                        "handle": {"type": "string"},
                        "index": U32,
                        "permissions": {"type": "string", "pattern": "^[01]{12}$"},
                        "legacyByteLength": {"type": "boolean"},
                    },
                },
            ),
            _data("vlist", {"type": "array", "items": _ref("Reference")}),
            _data("site", SITE),
            _data("key", {"type": "object", "required": ["kty"]}),
        ],
    },
    "HandleValue": {
        "type": "object",
        "required": ["index", "type", "data", "ttl", "timestamp"],
        "additionalProperties": False,
        "properties": {
            "index": U32,
            "type": {"type": "string", "minLength": 1},
            "data": _ref("Data"),
            "permissions": {
                "type": "string",
                "pattern": "^[01]{4}$",
                "description": "admin-read admin-write public-read public-write; "
                "present only when not 1110",
            },
            "ttl": {"oneOf": [U32, TIMESTAMP]},
            "timestamp": TIMESTAMP,
            "references": {"type": "array", "minItems": 1, "items": _ref("Reference")},
        },
    },
    "HandleValueInput": {
        "type": "object",
        "required": ["index", "type", "data"],
        "properties": {
            "index": {"type": ["integer", "string"]},
            "type": {"type": "string"},
            "data": {
                "oneOf": [{"type": "string"}, {"type": "object", "required": ["format", "value"]}]
            },
            "permissions": {"type": "string"},
            "ttl": {"type": ["integer", "string"]},
            "timestamp": {"type": ["string", "integer"]},
            "references": {"type": "array", "items": {"type": "object"}},
        },
    },
    "ResolutionReply": {
        "type": "object",
        "required": ["responseCode", "handle", "values"],
        "additionalProperties": False,
        "properties": {
            "responseCode": {"enum": [1, 200, 303]},
            "handle": {"type": "string"},
            "values": {"type": "array", "items": _ref("HandleValue")},
            "message": {"type": "string"},
            **RECORD_AT_PROPERTIES,
        },
    },
    "WriteReply": {
        "type": "object",
        "required": ["responseCode", "handle"],
        "additionalProperties": False,
        "properties": {"responseCode": {"const": 1}, "handle": {"type": "string"}},
    },
    "ErrorReply": {
        "type": "object",
        "required": ["responseCode", "message"],
        "additionalProperties": False,
        "properties": {
            "responseCode": {"type": "integer", "not": {"const": 1}},
            "handle": {"type": "string"},
            "message": {"type": "string"},
            "template": {"type": "string"},  # a template violation: which template
            "problems": {"type": "array", "items": _ref("TemplateProblem")},  # and each field
        },
    },
    "ListReply": {
        "type": "object",
        "required": ["responseCode", "prefix", "totalCount", "handles"],
        "additionalProperties": False,
        "properties": {
            "responseCode": {"const": 1},
            "prefix": {"type": "string"},
            "totalCount": {"type": "string", "pattern": "^[0-9]+$"},
            "page": {"type": "integer", "minimum": 0},
            "pageSize": {"type": "integer", "minimum": 0},
            "handles": {"type": "array", "items": {"type": "string"}},
        },
    },
    "SessionReply": {
        "type": "object",
        "required": ["authenticated"],
        "additionalProperties": False,
        "properties": {
            "sessionId": {"type": "string", "minLength": 32},
            "nonce": {
                "type": "string",
                "pattern": r"^[A-Za-z0-9+/]{22}==$",
                "description": "base64 of 16 random bytes; sign nonce || cnonce bytes",
            },
            "authenticated": {"type": "boolean"},
            "id": {"type": "string", "description": "index:handle of the authenticated admin"},
        },
    },
    "PrefixesReply": {
        "type": "object",
        "required": ["responseCode", "totalCount", "prefixes"],
        "additionalProperties": False,
        "properties": {
            "responseCode": {"const": 1},
            "totalCount": {"type": "string", "pattern": "^[0-9]+$"},
            "prefixes": {"type": "array", "items": {"type": "string"}},
        },
    },
}


def _json(schema: str, description: str) -> Schema:
    return {
        "description": description,
        "content": {
            "application/json": {"schema": _ref(schema)},
            "application/javascript": {
                "schema": {"type": "string", "description": "with callback= (JSONP)"}
            },
        },
    }


def _errors(*statuses: int) -> dict[str, Schema]:
    meaning = {
        300: "referral (RC 302/303)",
        400: "bad request (RC 4, 102, 200, 202, 301)",
        401: "credentials missing or wrong (RC 402, 403; WWW-Authenticate)",
        403: "not permitted (RC 400, 401, 404)",
        404: "handle not found (RC 100)",
        409: "already exists (RC 101, 201)",
        413: "body over http_max_body_bytes",
        415: "body is not JSON",
        429: "too many failed authentications (Retry-After)",
        500: "internal error (RC 2)",
        502: "a record from upstream that does not verify, under forward_signatures=require (RC 2)",
        503: "registry or upstream unavailable (RC 3)",
    }
    out = {str(s): _json("ErrorReply", meaning[s]) for s in statuses}
    out["default"] = _json("ErrorReply", "any other error: a Handle response code and a message")
    return out


def _query(name: str, description: str, schema: Schema | None = None, **extra: Any) -> Schema:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema or {"type": "string"},
        **extra,
    }


HANDLE_PARAM = {
    "name": "handle",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "PREFIX/SUFFIX; the '/' may be sent raw or as %2F, other bytes percent-encoded UTF-8.",
}
FLAG = {"type": "string", "enum": ["", "true", "false", "yes", "no", "1", "0", "on", "off"]}
COMMON = [
    _query("pretty", "indent the JSON", FLAG),
    _query("callback", "JSONP: wrap the reply in this JavaScript function (identifier only)"),
]
INDEX = _query("index", "value index; repeatable (at most 1000)", {"type": "string"}, explode=True)
BASIC = ADMIN_SECURITY
SESSION_HEADER = {
    "name": "Authorization",
    "in": "header",
    "required": False,
    "schema": {"type": "string"},
    "description": 'Handle sessionId="...", and to answer the challenge also id="300:88.118%2FADMIN", '
    'type="HS_PUBKEY", cnonce="<base64>", alg="SHA256", signature="<base64 signature '
    'of nonce || cnonce bytes>"',
}
SECURITY_SCHEMES = {
    "bearerToken": BEARER_SCHEME,
    "basicAuth": {
        "type": "http",
        "scheme": "basic",
        "description": "user index:handle (percent-encoded, e.g. 300%3A88.118.2%2FADMIN), "
        "password the admin's HS_SECKEY secret",
    },
    "handleSession": {
        "type": "http",
        "scheme": "handle",
        "description": 'Authorization: Handle sessionId="..." of a session authenticated at '
        "/api/sessions (HS_PUBKEY challenge, or created with Basic credentials)",
    },
    "clientCert": {
        "type": "mutualTLS",
        "description": "HTTPS with a client certificate signed by tls_client_ca_file whose subject "
        "(UID, CN or O) is index:handle and whose key is that admin's HS_PUBKEY; "
        'send Authorization: Handle clientCert="true"',
    },
}


def _sessions() -> dict[str, Any]:
    state = _json("SessionReply", "the session: authenticated, and as whom")
    return {
        "/api/sessions": {
            "post": {
                "summary": "Create a session (a challenge nonce); with Basic or a client certificate "
                "it starts authenticated",
                "operationId": "createSession",
                "security": [{}, *BASIC],
                "parameters": COMMON,
                "responses": {
                    "201": _json("SessionReply", "created; Location: /api/sessions/this"),
                    **_errors(400, 403, 429, 500, 503),
                },
            }
        },
        "/api/sessions/this": {
            "parameters": [SESSION_HEADER],
            "get": {
                "summary": "State of the session named by Authorization: Handle sessionId",
                "operationId": "getSession",
                "security": [{}, *BASIC],
                "parameters": COMMON,
                "responses": {"200": state, **_errors(401, 403, 429, 500)},
            },
            "put": {
                "summary": "Authenticate the session: answer its challenge",
                "operationId": "authenticateSession",
                "security": [{}, *BASIC],
                "parameters": COMMON,
                "responses": {"200": state, **_errors(401, 403, 429, 500)},
            },
            "delete": {
                "summary": "End the session",
                "operationId": "deleteSession",
                "security": [{"handleSession": []}],
                "responses": {"204": {"description": "deleted"}, **_errors(401, 403, 429, 500)},
            },
        },
    }


def _search() -> dict[str, Any]:
    """GET /api/search (node.fronts.http.search): records by a template field's value."""
    reply: Schema = {
        "type": "object",
        "required": ["responseCode", "template", "field", "value", "handles", "next", "total"],
        "additionalProperties": False,
        "properties": {
            "responseCode": {"const": 1},
            "template": {"type": "string", "description": "the template handle"},
            "field": {"type": "string", "description": "the field key, as the template spells it"},
            "value": {"type": "string"},
            "handles": {"type": "array", "items": {"type": "string"}},
            "next": {
                "type": ["string", "null"],
                "description": "send as after= for the next page; null on the last page",
            },
            "total": {
                "oneOf": [
                    {"type": "integer", "minimum": 0, "maximum": SEARCH_COUNT_BOUND},
                    {"const": f"more than {SEARCH_COUNT_BOUND}"},
                ],
                "description": f"matches under the caller's prefixes, counted up to "
                f"{SEARCH_COUNT_BOUND}",
            },
        },
    }
    ok = _json("ErrorReply", "one page of handles, in handle key order")  # its JSONP form
    ok["content"] = {**ok["content"], "application/json": {"schema": reply}}
    return {
        "/api/search": {
            "get": {
                "summary": "Find records by the value of a searchable (indexed or unique) "
                "field of the template they cite, under the prefixes the caller administers",
                "operationId": "searchByField",
                "security": BASIC,
                "parameters": [
                    _query(
                        "template",
                        "template handle, e.g. 88.118/TPL.TEXTILE.ROLL.V1",
                        required=True,
                    ),
                    _query("field", "field key, e.g. dyeLot", required=True),
                    _query("value", "the exact value", required=True),
                    _query(
                        "limit",
                        "page size (default 100, at most search_max_page_size)",
                        {"type": "integer", "minimum": 1},
                    ),
                    _query("after", "the previous page's next (a handle key)"),
                    *COMMON,
                ],
                "responses": {"200": ok, **_errors(400, 401, 403, 404, 429, 500, 503)},
            }
        }
    }


@cache
def openapi_document() -> dict[str, Any]:
    one = {
        "parameters": [HANDLE_PARAM],
        "get": {
            "summary": "Resolve a handle",
            "operationId": "getHandle",
            "security": [{}, *BASIC],
            "parameters": [
                INDEX,
                _query("type", "value type; repeatable (at most 256); 'URL.' matches subtypes"),
                _query(
                    "publicOnly", "only public values (default: true unless authenticated)", FLAG
                ),
                _query("auth", "authoritative answer (always)", FLAG),
                _query("cert", "accepted, ignored", FLAG),
                _query("doNotRefer", "no prefix referral (RC 100 instead)", FLAG),
                AT_PARAM,
                *COMMON,
                {
                    "name": "If-None-Match",
                    "in": "header",
                    "required": False,
                    "description": "an ETag of an earlier 200 reply: 304 while it still holds",
                    "schema": {"type": "string"},
                },
            ],
            "responses": {
                "200": {
                    **_json("ResolutionReply", "values (RC 1), or none match (RC 200)"),
                    "headers": {
                        "ETag": {
                            "description": "names these exact reply bytes (JSONP included)",
                            "schema": {"type": "string"},
                        },
                        "X-Idnode-Signature": {
                            "description": "a record resolved through the tree (a prefix "
                            "served elsewhere): how its signature checked",
                            "schema": {"enum": ["valid", "invalid", "unsigned", "unchecked"]},
                        },
                    },
                },
                "300": _json("ResolutionReply", "prefix referral (RC 303)"),
                "304": {"description": "If-None-Match names the reply's current ETag: no body"},
                **_errors(400, 401, 403, 404, 429, 500, 502, 503),
            },
        },
        "put": {
            "summary": "Create or change a handle",
            "operationId": "putHandle",
            "security": BASIC,
            "parameters": [
                _query(
                    "index", "add/replace only these indexes of an existing handle, or 'various'"
                ),
                _query("overwrite", "replace an existing handle (default true)", FLAG),
                _query("mintNewSuffix", "append a random suffix to the path; reply names it", FLAG),
                *COMMON,
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "oneOf": [
                                {"type": "array", "items": _ref("HandleValueInput")},
                                {
                                    "type": "object",
                                    "required": ["values"],
                                    "properties": {
                                        "handle": {"type": "string"},
                                        "values": {
                                            "type": "array",
                                            "items": _ref("HandleValueInput"),
                                        },
                                    },
                                },
                                _ref("HandleValueInput"),
                            ]
                        }
                    }
                },
            },
            "responses": {
                "200": _json("WriteReply", "written (RC 1)"),
                "201": _json("WriteReply", "created without overwrite (RC 1)"),
                **_errors(400, 401, 403, 404, 409, 413, 415, 429, 500, 503),
            },
        },
        "delete": {
            "summary": "Delete a handle, or some of its values",
            "operationId": "deleteHandle",
            "security": BASIC,
            "parameters": [INDEX, *COMMON],
            "responses": {
                "200": _json("WriteReply", "deleted (RC 1)"),
                **_errors(400, 401, 403, 404, 429, 500, 503),
            },
        },
        "options": {"summary": "CORS preflight", "responses": {"204": {"description": "allowed"}}},
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "idnode HTTP API",
            "version": __version__,
            "description": "Handle.Net-compatible JSON REST API of an IDIS secondary node.",
        },
        "paths": {
            "/api/handles/{handle}": one,
            "/api/handles": {
                "get": {
                    "summary": "List handles under a prefix (LIST_HANDLES)",
                    "operationId": "listHandles",
                    "security": BASIC,
                    "parameters": [
                        _query("prefix", "P or 0.NA/P", required=True),
                        _query("page", "page number from 0", {"type": "integer", "minimum": 0}),
                        _query(
                            "pageSize",
                            "0 counts only",
                            {"type": "integer", "minimum": 0, "maximum": 10000},
                        ),
                        *COMMON,
                    ],
                    "responses": {
                        "200": _json("ListReply", "one page of handles"),
                        **_errors(400, 401, 403, 429, 500, 503),
                    },
                }
            },
            "/api/prefixes": {
                "get": {
                    "summary": "Prefixes this node serves",
                    "operationId": "listPrefixes",
                    "parameters": COMMON,
                    "responses": {
                        "200": _json("PrefixesReply", "the prefixes"),
                        **_errors(400, 500),
                    },
                }
            },
            **_sessions(),
            **_search(),
            **manage_paths(),
            **writes_paths(),
            **history_paths(),
            **imports_paths(),
            "/api/openapi.json": {
                "get": {
                    "summary": "This document",
                    "operationId": "openapi",
                    "responses": {
                        "200": {
                            "description": "OpenAPI 3.1",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                }
            },
        },
        "components": {
            "schemas": {**SCHEMAS, **MANAGE_SCHEMAS, **WRITES_SCHEMAS, **HISTORY_SCHEMAS},
            "securitySchemes": SECURITY_SCHEMES,
        },
    }


@cache
def openapi_bytes() -> bytes:
    return orjson.dumps(openapi_document())
