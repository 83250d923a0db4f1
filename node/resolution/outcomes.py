"""What a resolution can come to, and the one table every front answers from: each
outcome carries its Handle response code and the message a front words it with
(native replies, the REST API, the record page), so no front maps outcomes itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from protocol.codes import ResponseCode
from protocol.values import HandleValue

if TYPE_CHECKING:
    from node.resolution.cache.records import Entry


@dataclass(frozen=True, slots=True)
class Found:
    handle: str  # as the client asked for it (replies echo this spelling)
    registered_as: str
    values: tuple[HandleValue, ...]
    version: int
    # The cache entry this answer came from: a front may keep its reply against it.
    # None when the reply must not be kept (no cache, served stale, a racing write).
    entry: Entry | None = None
    stale: bool = False
    # A record fetched from upstream: how its signature checked (node.resolution.forward:
    # valid, invalid, unsigned, unchecked). None: this node's own record.
    signature: str | None = None
    response_code: ClassVar[ResponseCode] = ResponseCode.SUCCESS

    @property
    def message(self) -> str:
        return ""

    @property
    def forwarded(self) -> bool:
        return self.signature is not None


@dataclass(frozen=True, slots=True)
class HandleNotFound:
    handle: str
    entry: Entry | None = None
    response_code: ClassVar[ResponseCode] = ResponseCode.HANDLE_NOT_FOUND

    @property
    def message(self) -> str:
        return f"handle {self.handle} not found"


@dataclass(frozen=True, slots=True)
class ValuesNotFound:
    handle: str
    entry: Entry | None = None
    response_code: ClassVar[ResponseCode] = ResponseCode.VALUES_NOT_FOUND

    @property
    def message(self) -> str:
        return "no values match the request"


@dataclass(frozen=True, slots=True)
class NotResponsible:
    """The handle's prefix is not served here (RC 301)."""

    handle: str
    prefix: str
    reason: str = ""  # why, when there is more to say (a registered prefix not enabled)
    response_code: ClassVar[ResponseCode] = ResponseCode.SERVER_NOT_RESP

    @property
    def message(self) -> str:
        return self.reason or f"this server is not responsible for prefix {self.prefix}"


@dataclass(frozen=True, slots=True)
class PrefixReferral:
    """RC 303: a derived prefix with no record of its own, delegated by an ancestor's
    HS_SITE.PREFIX / HS_SERV.PREFIX values (the reference answers with just those)."""

    handle: str
    values: tuple[HandleValue, ...]
    response_code: ClassVar[ResponseCode] = ResponseCode.PREFIX_REFERRAL

    @property
    def message(self) -> str:
        return "prefix delegated elsewhere: ask the servers in these values"


@dataclass(frozen=True, slots=True)
class InvalidHandle:
    handle: str
    reason: str
    response_code: ClassVar[ResponseCode] = ResponseCode.INVALID_HANDLE

    @property
    def message(self) -> str:
        return self.reason


@dataclass(frozen=True, slots=True)
class UpstreamFailed:
    """The handle lives elsewhere and nobody upstream answered in time, with nothing
    usable cached (RC 3: the client may retry)."""

    handle: str
    reason: str
    response_code: ClassVar[ResponseCode] = ResponseCode.SERVER_TOO_BUSY

    @property
    def message(self) -> str:
        return f"upstream resolution of {self.handle} failed: {self.reason}"


@dataclass(frozen=True, slots=True)
class Unverified:
    """A forwarded record whose signature does not verify, refused under
    ``forward_signatures = require`` (RC 2)."""

    handle: str
    verdict: str
    detail: str = ""
    response_code: ClassVar[ResponseCode] = ResponseCode.ERROR

    @property
    def message(self) -> str:
        why = f": {self.detail}" if self.detail else ""
        return f"the record {self.handle} from upstream is {self.verdict}, not verified{why}"


@dataclass(frozen=True, slots=True)
class RecursionTooDeep:
    """Forwarding asked for with a recursion count at the limit already (RC 6)."""

    handle: str
    limit: int
    response_code: ClassVar[ResponseCode] = ResponseCode.RECURSION_COUNT_TOO_HIGH

    @property
    def message(self) -> str:
        return f"recursion count reached {self.limit}: not forwarded again"


ResolveResult = (
    Found
    | HandleNotFound
    | ValuesNotFound
    | NotResponsible
    | PrefixReferral
    | InvalidHandle
    | UpstreamFailed
    | Unverified
    | RecursionTooDeep
)
