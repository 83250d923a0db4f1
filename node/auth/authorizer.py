"""The Handle HS_ADMIN model: may this identity do that to this handle?

An admin entry (HS_ADMIN data: permission bits + ``index:handle``) grants its bits to
the identity it names (index 0 there means any index of that handle) and, when it names
an HS_VLIST group, to every member of the group, transitively. Groups are read through
the resolver, so the node's built-in prefix records count (``200:0.NA/<prefix>``); traversal is breadth-first, loop-safe (each reference is visited
once) and bounded (``max_group_lookups`` records per question). Server admins from the
``server_admins`` setting hold every permission everywhere.

Denials carry the Handle response code the reference answers with: 400 INVALID_ADMIN
when the identity is no admin at all, 401 INSUFFICIENT_PERMISSIONS when a bit is
missing (both are HTTP 403).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence

from node.auth.identity import Identity
from node.auth.permissions import (
    ReadOnlyValue,
    is_admin_value,
    perm_names,
    perms_for_change,
    perms_for_removal,
)
from node.resolution.outcomes import Found
from node.resolution.resolver import Resolver
from protocol.codes import AdminPerm, Permission, ResponseCode
from protocol.errors import ProtocolError
from protocol.handle import Handle, normalise, parse_handle
from protocol.structured import AdminRef, decode_admin, decode_vlist
from protocol.values import HandleValue
from registry.rows import Record

VLIST_TYPE = "HS_VLIST"
ALL = int(AdminPerm(0xFFF))


class Denied(Exception):
    def __init__(self, response_code: ResponseCode, message: str):
        super().__init__(message)
        self.response_code = response_code

    @property
    def message(self) -> str:
        return str(self.args[0])


def parse_admin_list(text: str | Iterable[str]) -> tuple[AdminRef, ...]:
    """``"300:0.NA/88.118, 300:88.118/ADMIN"`` -> admin references with all bits."""
    items = text.split(",") if isinstance(text, str) else list(text)
    out = []
    for item in items:
        item = item.strip()
        if not item:
            continue
        index, colon, handle = item.partition(":")
        if not colon or not index.isdigit() or "/" not in handle:
            raise ValueError(f"admin {item!r} is not INDEX:HANDLE (e.g. 300:88.118/ADMIN)")
        out.append(AdminRef(handle.strip(), int(index), ALL))
    return tuple(out)


def _matches(ref: AdminRef | tuple[str, int], identity: Identity) -> bool:
    handle, index = (ref.handle, ref.index) if isinstance(ref, AdminRef) else ref
    return normalise(handle) == identity.key and index in (0, identity.index)


class Authorizer:
    def __init__(
        self,
        resolver: Resolver,
        server_admins: Sequence[AdminRef] = (),
        *,
        max_group_lookups: int = 64,
        max_group_depth: int = 8,
    ):
        self.resolver = resolver
        self.server_admins = tuple(server_admins)
        self.max_group_lookups = max_group_lookups
        self.max_group_depth = max_group_depth
        self._prefix_admins: dict[str, tuple[HandleValue, ...]] | None = None

    def for_one_request(self) -> Authorizer:
        """An authorizer that reads each prefix's admins once: for the items of one
        batch, which are authorized at one moment, as a single write is (2,000 items
        under one prefix would otherwise resolve its 0.NA record 2,000 times)."""
        scoped = Authorizer(
            self.resolver,
            self.server_admins,
            max_group_lookups=self.max_group_lookups,
            max_group_depth=self.max_group_depth,
        )
        scoped._prefix_admins = {}
        return scoped

    # -- who holds what -----------------------------------------------------------------

    async def is_server_admin(self, identity: Identity) -> bool:
        """One of the ``server_admins`` (or a member of a group they name)."""
        return await self._any_match(identity, self.server_admins)

    async def granted(self, identity: Identity, admin_values: Sequence[HandleValue]) -> int:
        """Union of the permission bits ``identity`` holds through ``admin_values``."""
        refs = list(self._admin_refs(admin_values))
        if await self._any_match(identity, self.server_admins):
            return ALL
        bits = 0
        for ref in refs:
            if not (~bits & ref.permissions & ALL):
                continue  # this entry could add nothing
            if await self._any_match(identity, (ref,)):
                bits |= ref.permissions
        return bits & ALL

    @staticmethod
    def _admin_refs(values: Sequence[HandleValue]) -> Iterable[AdminRef]:
        for value in values:
            if not is_admin_value(value):
                continue
            try:
                yield decode_admin(value.data)
            except ProtocolError:
                continue  # an undecodable admin entry grants nothing

    async def _any_match(self, identity: Identity, refs: Sequence[AdminRef]) -> bool:
        """Is ``identity`` one of ``refs``, or a member (transitively) of a group they name?"""
        queue: deque[tuple[str, int, int]] = deque()
        for ref in refs:
            if _matches(ref, identity):
                return True
            queue.append((ref.handle, ref.index, 0))
        seen: set[tuple[str, int]] = set()
        lookups = 0
        while queue:
            handle, index, depth = queue.popleft()
            key = (normalise(handle), index)
            if key in seen or index == 0 or depth >= self.max_group_depth:
                continue  # index 0 names no single group value (the reference skips it too)
            seen.add(key)
            lookups += 1
            if lookups > self.max_group_lookups:
                return False
            # Through the resolver: the node's built-in 0.NA/<prefix> records hold groups
            # too (200:0.NA/<prefix>, the group REST clients name), and the cache serves.
            found = await self.resolver.resolve(handle, (index,))
            if not isinstance(found, Found):
                continue
            for value in found.values:
                if value.index != index or value.type.upper() != VLIST_TYPE:
                    continue
                try:
                    members = decode_vlist(value.data)
                except ProtocolError:
                    continue
                for member in members:
                    if _matches((member.handle, member.index), identity):
                        return True
                    queue.append((member.handle, member.index, depth + 1))
        return False

    async def prefix_admin_values(self, prefix: str) -> tuple[HandleValue, ...]:
        """HS_ADMIN values of ``0.NA/<prefix>``: the stored record, or the one this node
        synthesizes for a prefix it serves (``Site.prefix_record``)."""
        memo = self._prefix_admins
        if memo is not None and prefix.upper() in memo:
            return memo[prefix.upper()]
        result = await self.resolver.resolve(f"0.NA/{prefix}", (), ("HS_ADMIN",))
        values = result.values if isinstance(result, Found) else ()
        if memo is not None:
            memo[prefix.upper()] = values
        return values

    # -- decisions ------------------------------------------------------------------------

    async def require(
        self, identity: Identity, need: int, admin_values: Sequence[HandleValue], what: str
    ) -> None:
        bits = await self.granted(identity, admin_values)
        if bits == 0:
            raise Denied(ResponseCode.INVALID_ADMIN, f"{identity.actor} is not an admin of {what}")
        missing = need & ~bits
        if missing:
            raise Denied(
                ResponseCode.INSUFFICIENT_PERMISSIONS,
                f"{identity.actor} lacks {perm_names(missing)} on {what}",
            )

    async def handle_admin_values(
        self, record_values: Sequence[HandleValue], prefix: str
    ) -> Sequence[HandleValue]:
        """Who administers a record: its HS_ADMIN values; a record without any (created
        by a client that sent none) is administered by its prefix's admins rather than
        by nobody (the reference leaves such a record to server admins only)."""
        own = [v for v in record_values if is_admin_value(v)]
        return own if own else await self.prefix_admin_values(prefix)

    async def require_on_prefix(self, identity: Identity, need: int, prefix: str) -> None:
        values = await self.prefix_admin_values(prefix)
        await self.require(identity, need, values, f"prefix {prefix}")

    async def authorize_put(
        self,
        identity: Identity,
        handle: Handle,
        existing: Record | None,
        merged: Sequence[HandleValue],
        *,
        overwrite: bool,
        partial: bool,
    ) -> None:
        """Check a write of ``merged`` (the whole record as it would be stored)."""
        self.refuse_node_records(handle)
        if existing is None or (not overwrite and not partial):
            # Create-only on an existing handle: an identical record is a retried create
            # (success), anything else a conflict; both only for who may create here.
            await self.require_on_prefix(identity, *_right_to_create(handle))
            return
        try:
            need = perms_for_change(existing.values, merged)
        except ReadOnlyValue as exc:
            raise Denied(ResponseCode.INSUFFICIENT_PERMISSIONS, str(exc)) from None
        # need == 0 (nothing changes) still requires being an admin of the handle.
        admins = await self.handle_admin_values(existing.values, handle.owning_prefix)
        await self.require(identity, int(need), admins, existing.handle)

    async def authorize_delete(
        self, identity: Identity, handle: Handle, existing: Record, indexes: frozenset[int] | None
    ) -> None:
        self.refuse_node_records(handle)
        prefix = handle.owning_prefix
        need = (
            AdminPerm.DELETE_HANDLE
            if indexes is None
            else perms_for_removal(existing.values, indexes)
        )
        admins = await self.handle_admin_values(existing.values, prefix)
        await self.require(identity, int(need), admins, existing.handle)

    def refuse_node_records(self, handle: Handle) -> None:
        """``0.NA/<prefix>`` of a prefix this node serves is the node's own record (its
        HS_SITE, HS_ADMIN and admin group follow from the settings and the prefix's
        registration): a stored copy would shadow it, so no admin writes one here.
        Operators change what it says through the node (``idnode prefix``, settings)."""
        if handle.is_prefix_record and self.resolver.served.exact(handle.owning_prefix)[0]:
            raise Denied(
                ResponseCode.INSUFFICIENT_PERMISSIONS,
                f"{handle.text} is managed by this node (its site, admin and admin group come "
                "from the node's settings and the prefix's registration); it cannot be written",
            )

    async def readable(
        self,
        identity: Identity | None,
        handle: str,
        values: Sequence[HandleValue],
        *,
        public_only: bool,
    ) -> list[HandleValue]:
        """What ``identity`` may be sent of ``values`` (from ``handle``): the public ones,
        plus the admin-readable ones for an admin holding READ_VALUE on the handle;
        a value readable by nobody is never sent. Denied when the caller asked for more
        than public values and may not read them (the reference answers so too)."""
        public = [v for v in values if v.permissions & Permission.PUBLIC_READ]
        private = [
            v
            for v in values
            if not v.permissions & Permission.PUBLIC_READ and v.permissions & Permission.ADMIN_READ
        ]
        if public_only or not private or identity is None:
            return public
        own = await self.resolver.resolve(handle, (), ("HS_ADMIN",))
        admin_values = await self.handle_admin_values(
            own.values if isinstance(own, Found) else (), parse_handle(handle).owning_prefix
        )
        await self.require(identity, int(AdminPerm.READ_VALUE), admin_values, handle)
        return sorted(public + private, key=lambda v: v.index)

    async def may_read_private(
        self, identity: Identity, admin_values: Sequence[HandleValue]
    ) -> bool:
        return bool(await self.granted(identity, admin_values) & AdminPerm.READ_VALUE)

    async def authorize_list(self, identity: Identity, prefix: str) -> None:
        await self.require_on_prefix(identity, AdminPerm.LIST_HANDLES, prefix)


def _right_to_create(handle: Handle) -> tuple[int, str]:
    """ADD_HANDLE on the handle's prefix; for a derived prefix record ``0.NA/X.Y``,
    ADD_NA on its parent X (docs/authentication.md, "Admin operations")."""
    prefix = handle.owning_prefix
    if handle.is_prefix_record and "." in prefix:
        return int(AdminPerm.ADD_NA), prefix.rsplit(".", 1)[0]
    return int(AdminPerm.ADD_HANDLE), prefix
