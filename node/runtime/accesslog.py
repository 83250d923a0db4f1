"""The access log: one JSON object per request on the logger ``idnode.access``.

``{"front": "udp", "op": "resolution", "handle": "88.118.2/A1", "rc": 1,
"latency_ms": 0.412, "client": "203.0.113.7"}`` — ``rc`` the Handle response code sent
(HTTP: the body's ``responseCode``, else the HTTP status; null for an encrypted native
reply), ``client`` the address the request came from (HTTP: the forwarded client behind
an ``http_trusted_proxies`` proxy).

``access_log`` chooses: ``off`` (the default: a public node's request rate would drown
the log), ``sampled`` (each request logged with probability ``access_log_sample_rate``)
or ``all``. When on, the logger logs at info whatever ``log_level`` says, so turning the
access log on is enough to see it. Metrics count every request either way; this log
answers "who asked for what, and what did they get".

Callers ask ``wanted()`` first and build the fields only then, so an access log that is
off costs one attribute test per request.
"""

from __future__ import annotations

import logging
import random
import struct
from collections.abc import Callable

import orjson

from node.settings import ACCESS_LOG_MODES, Settings
from protocol.message import ENVELOPE_BYTES, HEADER_BYTES, EnvelopeFlag, Message

HANDLE_MAX_CHARS = 512  # a handle longer than this is cut (a request may carry 256 KiB)
_U32 = struct.Struct(">I")
_RC_OFFSET = ENVELOPE_BYTES + 4  # the message header opens with the opcode, then the code
_ENVELOPE_FLAGS_OFFSET = 2
_HANDLE_AT = ENVELOPE_BYTES + HEADER_BYTES  # a resolution body opens with the handle


class AccessLog:
    __slots__ = ("_random", "logger", "mode", "sample_rate")

    def __init__(
        self,
        mode: str = "off",
        sample_rate: float = 0.01,
        *,
        logger: logging.Logger | None = None,
        random_unit: Callable[[], float] | None = None,
    ):
        if mode not in ACCESS_LOG_MODES:
            raise ValueError(
                f"access log mode {mode!r} is not one of {', '.join(ACCESS_LOG_MODES)}"
            )
        if not 0 < sample_rate <= 1:
            raise ValueError(f"access log sample rate {sample_rate} is not in (0, 1]")
        self.mode = mode
        self.sample_rate = sample_rate
        self.logger = logger or logging.getLogger("idnode.access")
        self._random = random_unit or random.random
        if mode != "off" and self.logger.getEffectiveLevel() > logging.INFO:
            self.logger.setLevel(logging.INFO)

    @classmethod
    def from_settings(cls, settings: Settings) -> AccessLog:
        return cls(settings.access_log, settings.access_log_sample_rate)

    def wanted(self) -> bool:
        """Whether to log the request at hand (in ``sampled`` mode, a draw)."""
        mode = self.mode
        if mode == "off":
            return False
        return mode == "all" or self._random() < self.sample_rate

    def hit(
        self,
        front: str,
        request: bytes,
        rc: int | None,
        seconds: float,
        client: str | None,
    ) -> None:
        """Log a resolution the hot path answered from bytes it never decoded (UDP and
        TCP reply-cache hits), when the log wants it."""
        if self.wanted():
            self.write(front, "resolution", wire_handle(request), rc, seconds, client)

    def write(
        self,
        front: str,
        op: str,
        handle: str | None,
        rc: int | None,
        seconds: float,
        client: str | None,
    ) -> None:
        if handle is not None and len(handle) > HANDLE_MAX_CHARS:
            handle = handle[:HANDLE_MAX_CHARS]
        line = {
            "front": front,
            "op": op,
            "handle": handle,
            "rc": rc,
            "latency_ms": round(seconds * 1000, 3),
            "client": client,
        }
        self.logger.info("%s", orjson.dumps(line).decode())


def request_handle(request: Message) -> str | None:
    """The handle a native request names (resolution, admin operations), if any."""
    handle = getattr(request.body, "handle", None)
    return handle if isinstance(handle, str) and handle else None


def wire_handle(request: bytes) -> str | None:
    """The handle of an encoded resolution request (envelope included), read as far as
    the request holds one."""
    at = _HANDLE_AT + 4
    if len(request) < at:
        return None
    size = _U32.unpack_from(request, _HANDLE_AT)[0]
    return request[at : at + min(size, HANDLE_MAX_CHARS * 4)].decode("utf-8", "replace") or None


def reply_code(reply: bytes | bytearray | list[bytes] | None) -> int | None:
    """The response code of an encoded native reply (the first datagram of a split
    one); None when there is no reply or it is encrypted."""
    data = reply[0] if isinstance(reply, list) else reply
    if not data or len(data) < _RC_OFFSET + _U32.size:
        return None
    if data[_ENVELOPE_FLAGS_OFFSET] & EnvelopeFlag.ENCRYPTED:
        return None
    return int(_U32.unpack_from(data, _RC_OFFSET)[0])
