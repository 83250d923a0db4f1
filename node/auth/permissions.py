"""Which HS_ADMIN permission bits a change needs (RFC 3651 §3.2.1), as the reference
computes them (``HandleServer.getPermsAndSetTimestampsForCreationWithOverwrite``,
``doRemoveValue``, ``doModifyValue``). Pure functions over values."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

from protocol.codes import AdminPerm, Permission
from protocol.values import HandleValue

ADMIN_TYPE = "HS_ADMIN"


def is_admin_value(value: HandleValue) -> bool:
    return value.type.upper() == ADMIN_TYPE


def _same(a: HandleValue, b: HandleValue) -> bool:
    return replace(a, timestamp=0) == replace(b, timestamp=0)


class ReadOnlyValue(Exception):
    """A value without admin-write permission cannot be changed by anyone."""


def perms_for_change(old: Sequence[HandleValue], new: Sequence[HandleValue]) -> AdminPerm:
    """Bits needed to turn record ``old`` into record ``new`` (both whole records)."""
    need = AdminPerm(0)
    before = {v.index: v for v in old}
    after = {v.index: v for v in new}
    for index, value in before.items():
        if index not in after:
            need |= AdminPerm.REMOVE_ADMIN if is_admin_value(value) else AdminPerm.REMOVE_VALUE
    for index, value in after.items():
        prev = before.get(index)
        if prev is None:
            need |= AdminPerm.ADD_ADMIN if is_admin_value(value) else AdminPerm.ADD_VALUE
            continue
        if _same(prev, value):
            continue
        if not prev.permissions & Permission.ADMIN_WRITE:
            raise ReadOnlyValue(f"value {index} is read-only (no admin-write permission)")
        was_admin, is_admin = is_admin_value(prev), is_admin_value(value)
        if was_admin and is_admin:
            need |= AdminPerm.MODIFY_ADMIN
        elif was_admin:
            need |= AdminPerm.REMOVE_ADMIN | AdminPerm.MODIFY_VALUE
        elif is_admin:
            need |= AdminPerm.MODIFY_VALUE | AdminPerm.ADD_ADMIN
        elif not prev.permissions & Permission.PUBLIC_WRITE:
            need |= AdminPerm.MODIFY_VALUE
    return need


def perms_for_removal(old: Sequence[HandleValue], indexes: Iterable[int]) -> AdminPerm:
    need = AdminPerm(0)
    by_index = {v.index: v for v in old}
    for index in indexes:
        value = by_index.get(index)
        need |= (
            AdminPerm.REMOVE_ADMIN
            if value is not None and is_admin_value(value)
            else AdminPerm.REMOVE_VALUE
        )
    return need


def perm_names(bits: int) -> str:
    names = [p.name for p in AdminPerm if bits & p and p.name]
    return ", ".join(names) or "none"
