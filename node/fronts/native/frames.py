"""What the native fronts share: the reply messages of one request, in order."""

from __future__ import annotations

from node.fronts.native.handler import Reply


def messages(reply: Reply) -> list[bytes]:
    """The reply messages to send, in order (LIST_HANDLES sends several)."""
    if reply is None:
        return []
    return reply if isinstance(reply, list) else [reply]
