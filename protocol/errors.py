"""One exception root for protocol/, each error knowing the Handle response code it maps to.

Split as h11 does: the peer sent something malformed (``RemoteProtocolError``) versus
we were asked to build something invalid (``LocalProtocolError``). The docstring is
the default message.
"""

from __future__ import annotations

from .codes import ResponseCode


class ProtocolError(Exception):
    """Handle protocol error."""

    response_code: ResponseCode = ResponseCode.PROTOCOL_ERROR

    def __init__(self, message: str | None = None, *, response_code: ResponseCode | None = None):
        super().__init__(message or (self.__doc__ or "").strip())
        if response_code is not None:
            self.response_code = response_code

    @property
    def message(self) -> str:
        return str(self.args[0])


class RemoteProtocolError(ProtocolError):
    """The peer sent a malformed message."""


class LocalProtocolError(ProtocolError):
    """An invalid message or value was asked to be built."""


class HandleSyntaxError(ProtocolError):
    """Invalid handle."""

    response_code = ResponseCode.INVALID_HANDLE


class ValueFormatError(ProtocolError):
    """Invalid handle value."""

    response_code = ResponseCode.INVALID_VALUE
