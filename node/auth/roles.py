"""Who may manage enterprises and prefixes (docs/enterprises.md):

- a **platform admin** is one of the ``server_admins`` (``Authorizer.is_server_admin``);
- an **auditor** is one of the ``auditors``, matched exactly as server admins are
  (directly, or as a member of an HS_VLIST group the setting names);
- an **enterprise admin** is ``300:<prefix>/ADMIN`` of an enabled prefix of that
  enterprise: the identity enabling a prefix creates (``node.resolution.site``
  ``prefix_record`` names it the prefix's admin).

One identity may hold several roles (the operator's ``300:88.118/ADMIN`` is a platform
admin and the admin of the operating enterprise).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from node.auth.authorizer import Authorizer
from node.auth.identity import Identity
from node.resolution.site import ENTERPRISE_ADMIN_INDEX
from protocol.errors import HandleSyntaxError
from protocol.handle import normalise, parse_handle
from protocol.structured import AdminRef
from registry.rows import PrefixStatus
from registry.store import Registry

ADMIN_SUFFIX = "ADMIN"


@dataclass(frozen=True, slots=True)
class Roles:
    platform_admin: bool = False
    auditor: bool = False
    enterprise: str | None = None  # credit code of the enterprise it administers

    @property
    def any(self) -> bool:
        return self.platform_admin or self.auditor or self.enterprise is not None

    @property
    def sees_all(self) -> bool:
        """Platform admins and auditors see every enterprise's prefixes and history."""
        return self.platform_admin or self.auditor

    def may_see(self, credit_code: str) -> bool:
        return self.sees_all or self.enterprise == credit_code


def enterprise_admin_prefix(identity: Identity) -> str | None:
    """``88.118.2`` for ``300:88.118.2/ADMIN``; None for any other identity."""
    if identity.index != ENTERPRISE_ADMIN_INDEX:
        return None
    try:
        handle = parse_handle(identity.handle)
    except HandleSyntaxError:
        return None
    return handle.prefix if normalise(handle.suffix) == ADMIN_SUFFIX else None


class RoleCheck:
    def __init__(self, authorizer: Authorizer, registry: Registry, auditors: Sequence[AdminRef]):
        self.authorizer = authorizer
        self.registry = registry
        # The auditors are the "server admins" of an authorizer of their own: the same
        # matching (index 0 for any index, groups, bounded traversal), nothing duplicated.
        # Only its is_server_admin is ever asked.
        self._auditors = Authorizer(
            authorizer.resolver,
            auditors,
            max_group_lookups=authorizer.max_group_lookups,
            max_group_depth=authorizer.max_group_depth,
        )

    async def is_auditor(self, identity: Identity) -> bool:
        return bool(self._auditors.server_admins) and await self._auditors.is_server_admin(identity)

    async def enterprise_of(self, identity: Identity) -> str | None:
        """The credit code of the enterprise ``identity`` is the admin of, if any."""
        prefix = enterprise_admin_prefix(identity)
        if prefix is None:
            return None
        row = await self.registry.get_prefix(prefix)
        if row is None or row.status != PrefixStatus.ENABLED:
            return None  # a disabled enterprise prefix's admin manages nothing meanwhile
        return row.credit_code

    async def of(self, identity: Identity) -> Roles:
        return Roles(
            platform_admin=await self.authorizer.is_server_admin(identity),
            auditor=await self.is_auditor(identity),
            enterprise=await self.enterprise_of(identity),
        )
