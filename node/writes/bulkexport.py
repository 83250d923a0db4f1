"""Bulk export (docs/import.md): every record under a prefix, in key order, in the forms
``node.writes.bulkimport`` reads, so an export imports again as the same records.

NDJSON: ``{"handle", "values"}`` (Handle.Net JSON values), or with a template
``{"handle", "template", "fields", "values"?}``: the template's fields by name and any
other values as they are. CSV (a template is required): ``handle`` and one column per
template field; values that are not fields of the template have no column there.

What never leaves: HS_SECKEY secrets (set them again one by one) and HS_SIGNATURE
values (the importing node signs afresh).
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from typing import Any

import orjson

from node.errors import NodeError
from node.secrets.vault import is_seckey
from node.templates.catalog import TemplateCatalog
from protocol.handle import normalise
from protocol.jsonvalues import values_to_json
from protocol.recordsig import is_signature
from protocol.templates import CITE_INDEX, CITE_TYPE, Template, cited
from protocol.values import HandleValue
from registry.bulk import ImportStore

PAGE = 2000  # records per registry read


class ExportRefused(NodeError):
    """The export cannot be made as asked (no such template, CSV without a template)."""


async def export_lines(
    store: ImportStore,
    catalog: TemplateCatalog,
    prefix: str,
    fmt: str,
    template_name: str | None = None,
) -> AsyncIterator[bytes]:
    """The export, one line (bytes, newline-terminated) at a time."""
    template: Template | None = None
    if template_name:
        template = await catalog.get(template_name)
        if template is None:
            raise ExportRefused(f"no such template {template_name} (IDIS_TEMPLATE)")
    if fmt == "csv" and template is None:
        raise ExportRefused("a CSV export needs --template (its columns are the template's fields)")
    if fmt == "csv":
        assert template is not None
        yield _csv_line(["handle", *(f.key for f in template.fields)])
    after = ""
    while True:
        page = await store.export_batch(normalise(prefix), after, PAGE)
        for _key, record in page:
            values = [v for v in record.decoded() if not is_seckey(v) and not is_signature(v)]
            if template is not None and (cited(values) or "").upper() != template.handle.upper():
                continue
            if fmt == "csv":
                assert template is not None
                yield _csv_line(_csv_row(record.handle, template, values))
            else:
                yield orjson.dumps(_ndjson(record.handle, template, values)) + b"\n"
        if len(page) < PAGE:
            return
        after = page[-1][0]


def _ndjson(handle: str, template: Template | None, values: list[HandleValue]) -> Any:
    if template is None:
        return {"handle": handle, "values": values_to_json(values)}
    fields = {}
    rest = []
    for v in values:
        f = template.at(v.index)
        if f is not None and v.type.upper() == f.key.upper():
            fields[f.key] = v.data.decode("utf-8", "replace")
        elif not (v.index == CITE_INDEX and v.type.upper() == CITE_TYPE):
            rest.append(v)
    out: dict[str, Any] = {"handle": handle, "template": template.handle, "fields": fields}
    if rest:
        out["values"] = values_to_json(rest)
    return out


def _csv_row(handle: str, template: Template, values: list[HandleValue]) -> list[str]:
    held = {v.index: v for v in values}
    cells = [handle]
    for f in template.fields:
        v = held.get(f.index)
        cells.append(v.data.decode("utf-8", "replace") if v is not None else "")
    return cells


def _csv_line(cells: list[str]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(cells)
    return out.getvalue().encode("utf-8")
