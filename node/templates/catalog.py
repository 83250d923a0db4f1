"""The templates records cite, read through the node (its registry, or the tree for a
template another node publishes) and kept: a published template never changes (a new
version is a new handle: ``guard_template_record``), so a template read once is good
until it is deleted. Misses are not kept: a template published a moment later is found.

``check_record`` is what every write path runs (node.writes.service): the template the
record cites, every field against it, and the record's entries in the field index.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence

from protocol.handle import normalise
from protocol.templates import (
    BODY_TYPE,
    CITE_INDEX,
    CITE_TYPE,
    Problem,
    Template,
    TemplateError,
    TemplateViolation,
    cited,
)
from protocol.values import HandleValue
from registry.rows import FieldRows
from registry.store import Registry

Lookup = Callable[[str], Awaitable[tuple[HandleValue, ...] | None]]


class TemplateCatalog:
    def __init__(self, lookup: Lookup, *, max_entries: int = 1024):
        self.lookup = lookup
        self.max_entries = max_entries
        self._kept: OrderedDict[str, Template] = OrderedDict()

    async def get(self, handle: str) -> Template | None:
        key = handle.upper()
        kept = self._kept.get(key)
        if kept is not None:
            self._kept.move_to_end(key)
            return kept
        values = await self.lookup(handle)
        body = next((v for v in values or () if v.type.upper() == BODY_TYPE), None)
        if body is None:
            return None
        try:
            template = Template.from_json(body.data, handle)
        except TemplateError:
            return None  # a broken template validates nothing: records citing it are refused
        self._kept[key] = template
        while len(self._kept) > self.max_entries:
            self._kept.popitem(last=False)
        return template

    def forget(self, handle: str) -> None:
        self._kept.pop(handle.upper(), None)

    async def check_record(self, values: Sequence[HandleValue]) -> FieldRows | None:
        """The record's field index entries if it cites a template it follows; None when
        it cites none. TemplateViolation names every problem otherwise."""
        name = cited(values)
        if name is None:
            return None
        template = await self.get(name)
        if template is None:
            raise TemplateViolation(
                name, [Problem(CITE_TYPE, CITE_INDEX, name, "no such template (IDIS_TEMPLATE)")]
            )
        problems = template.problems(values)
        if problems:
            raise TemplateViolation(template.handle, problems)
        return field_rows(template, values)


def field_rows(template: Template, values: Sequence[HandleValue]) -> FieldRows:
    indexed, unique = [], []
    for v in values:
        f = template.at(v.index)
        if f is None or not f.searchable:
            continue
        entry = (template.handle, f.key, v.data.decode("utf-8", "replace"))
        if f.indexed:
            indexed.append(entry)
        if f.unique:
            unique.append(entry)
    return FieldRows(tuple(indexed), tuple(unique))


TEMPLATE_ROW = BODY_TYPE  # template_key of a template record's own field index row


def guard_template_record(
    handle: str, existing: Sequence[HandleValue] | None, merged: Sequence[HandleValue]
) -> FieldRows | None:
    """A template record's body must be a valid template naming its own handle, and once
    published it does not change (records made under it must stay valid). Its field
    index row (so templates can be listed); None for other records."""
    body = next((v for v in merged if v.type.upper() == BODY_TYPE), None)
    if body is None:
        return None
    template = Template.from_json(body.data, handle)  # TemplateError: not a usable template
    old = next((v for v in existing or () if v.type.upper() == BODY_TYPE), None)
    if old is not None and old.data != body.data:
        raise TemplateError(
            f"{handle} is a published template and does not change: publish the new "
            "definition as a new version (a new handle, e.g. ...V2)"
        )
    return FieldRows(indexed=((TEMPLATE_ROW, "prefix", template.prefix.upper()),))


def registry_catalog(registry: Registry) -> TemplateCatalog:
    """A catalog reading this node's registry (the CLI's writes, with no node running)."""

    async def lookup(handle: str) -> tuple[HandleValue, ...] | None:
        record = await registry.get_handle(normalise(handle))
        return record.values if record is not None else None

    return TemplateCatalog(lookup)
