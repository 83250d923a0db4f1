"""Handle response codes -> HTTP statuses (docs/rest-api.md, the reference's
``BaseHandleRequestProcessingServlet.statusCodeFromResponse``), and the one exception
the endpoints raise to answer with an error body."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from protocol.codes import ResponseCode as RC

_STATUS = {
    RC.SUCCESS: 200,
    RC.HANDLE_NOT_FOUND: 404,
    RC.HANDLE_ALREADY_EXISTS: 409,
    RC.VALUE_ALREADY_EXISTS: 409,
    RC.PROTOCOL_ERROR: 400,
    RC.INVALID_HANDLE: 400,
    RC.INVALID_VALUE: 400,
    RC.SERVER_NOT_RESP: 400,
    RC.AUTHENTICATION_NEEDED: 401,
    RC.INVALID_ADMIN: 403,
    RC.INSUFFICIENT_PERMISSIONS: 403,
    RC.AUTHENTICATION_FAILED: 403,
    RC.INVALID_CREDENTIAL: 403,
    RC.SERVER_TOO_BUSY: 503,
    RC.SERVER_READ_ONLY: 503,
    RC.OPERATION_NOT_SUPPORTED: 501,
    RC.SERVICE_REFERRAL: 300,
    RC.PREFIX_REFERRAL: 300,
}


def http_status(rc: int, *, resolution: bool = False, created: bool = False) -> int:
    """RC 1 -> 200 (201 for a create without overwrite); RC 200 -> 200 on resolution,
    400 otherwise; anything unmapped (RC 2) -> 500."""
    if rc == RC.SUCCESS:
        return 201 if created else 200
    if rc == RC.VALUES_NOT_FOUND:
        return 200 if resolution else 400
    return _STATUS.get(RC(rc) if rc in RC._value2member_map_ else RC.ERROR, 500)


class ApiError(Exception):
    """Answer with ``{"responseCode": rc, "handle"?: ..., "message": ...}``."""

    def __init__(
        self,
        response_code: int,
        message: str,
        *,
        status: int | None = None,
        handle: str | None = None,
        headers: Mapping[str, str] | None = None,
        details: Mapping[str, Any] | None = None,
    ):
        super().__init__(message)
        self.details = dict(details or {})  # more members of the error body (``problems``)
        self.response_code = int(response_code)
        self.status = status if status is not None else http_status(self.response_code)
        self.handle = handle
        self.headers = dict(headers or {})

    @property
    def message(self) -> str:
        return str(self.args[0])
