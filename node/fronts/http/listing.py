"""``GET /api/handles?prefix=P&page=&pageSize=`` and ``GET /api/prefixes``.

Listing shapes follow the reference (``ListCallback``): ``totalCount`` is a string,
``page``/``pageSize`` are echoed when paging applies, ``pageSize=0`` counts only.
Listing handles needs LIST_HANDLES on the prefix (from ``0.NA/<prefix>``'s HS_ADMIN).
Without ``pageSize`` the reference sends every handle; we send at most
``MAX_PAGE_SIZE`` and then say which page that was, so a client can go on.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from node.auth import Denied
from node.fronts.http import params
from node.fronts.http.errors import ApiError
from node.fronts.http.reply import NO_STORE, Style, render
from node.fronts.http.services import services
from protocol.codes import ResponseCode as RC
from protocol.errors import HandleSyntaxError
from protocol.handle import NA_PREFIX, normalise, parse_prefix
from registry.store import MAX_PAGE_SIZE


def _prefix(asked: str) -> str:
    bare = (
        asked[len(NA_PREFIX) + 1 :]
        if normalise(asked).startswith(NA_PREFIX.upper() + "/")
        else asked
    )
    try:
        return parse_prefix(bare)
    except HandleSyntaxError as exc:
        raise ApiError(RC.INVALID_HANDLE, exc.message) from None


async def list_handles(request: web.Request) -> web.Response:
    svc = services(request)
    q = request.query
    params.callback(q)
    asked = q.get("prefix")
    if asked is None:
        raise ApiError(
            RC.INVALID_HANDLE, "empty handle: use /api/handles/{handle}, or ?prefix=P to list"
        )
    prefix = _prefix(asked)
    page, page_size = params.page(q)
    identity = await svc.require_identity(request, "listing handles")
    if not svc.resolver.served.serves(prefix):
        raise ApiError(RC.SERVER_NOT_RESP, svc.resolver.served.why_not_served(prefix))
    try:
        await svc.authorizer.authorize_list(identity, prefix)
    except Denied as exc:
        raise ApiError(exc.response_code, exc.message) from None
    size = MAX_PAGE_SIZE if page_size is None else page_size
    total, handles = await svc.resolver.registry.list_handles(prefix, page or 0, size)
    body: dict[str, Any] = {"responseCode": 1, "prefix": asked, "totalCount": str(total)}
    if page is not None or page_size is not None or total > len(handles):
        body["page"] = page or 0
        body["pageSize"] = size
    body["handles"] = handles
    return render(body, status=200, style=Style.of(request), headers={"Cache-Control": NO_STORE})


async def list_prefixes(request: web.Request) -> web.Response:
    """The prefixes this node answers for (configured and enabled registered ones);
    public, since their ``0.NA`` records are public anyway."""
    svc = services(request)
    params.callback(request.query)
    seen: dict[str, str] = {}
    for p in svc.resolver.served.all():
        seen.setdefault(normalise(p), p)
    prefixes = [seen[k] for k in sorted(seen)]
    body = {"responseCode": 1, "totalCount": str(len(prefixes)), "prefixes": prefixes}
    return render(body, status=200, style=Style.of(request), headers={"Cache-Control": "no-cache"})
