"""The bulk import service (node/writes/bulkimport.py) over a real PostgreSQL: 100,000
rolls with bad rows among them, every bad row named with its line and reason, every
good one in, signed as the write service signs and in the field index."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime

import asyncpg
import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from node.signing.signer import RecordSigner
from node.templates.catalog import registry_catalog
from node.templates.shipped import ROLL
from node.writes.bulkimport import BulkImporter, ImportRefused, ImportRequest, RecordSplitter
from node.writes.bulkrows import Batch, RowPreparer
from protocol.handle import normalise
from protocol.jose import SigningKey, jws_parse
from protocol.recordsig import is_signature, verify_record
from registry.bulk import ChunkOutcome, ImportStore
from registry.migrate import migrate
from registry.store import Registry
from tests.node.bulk_support import (
    HEADER,
    csv_text,
    prepare_registry,
    roll_fields,
    roll_handle,
    roll_row,
    rolls,
)

NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
NOW_S = int(NOW.timestamp())
ROWS = 100_000


def make_signer() -> RecordSigner:
    key = SigningKey(ec.generate_private_key(ec.SECP256R1()), "ES256", "node")
    root = SigningKey(ec.generate_private_key(ec.SECP256R1()), "ES256", "root")
    return RecordSigner(key, 86400 * 30, root_key=root)


@pytest.fixture
async def registry(database_url: str) -> AsyncIterator[Registry]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    assert pool is not None
    try:
        async with pool.acquire() as conn:
            await migrate(conn)
        registry = Registry(pool)
        await prepare_registry(registry, NOW)
        yield registry
    finally:
        await pool.close()


def importer(
    registry: Registry, signer: RecordSigner | None, chunk_rows: int = 20_000
) -> BulkImporter:
    return BulkImporter(
        ImportStore(registry),
        registry_catalog(registry),
        chunk_rows=chunk_rows,
        clock=lambda: NOW,
        preparer=RowPreparer(signer),
    )


async def blocks(data: bytes, size: int = 1 << 16) -> AsyncIterator[bytes]:
    for at in range(0, len(data), size):
        yield data[at : at + size]


def bad_rows() -> dict[int, tuple[list[str], str]]:
    """Row number (0-based, data rows) -> (the row, a piece of the reason it must get)."""

    def changed(n: int, **fields: str) -> list[str]:
        row = roll_row(n)
        for key, value in fields.items():
            row[HEADER.index(key)] = value
        return row

    return {
        7: (
            changed(7, fabricCode="30121000750720000"),
            "fabricCode (index 2000) = '30121000750720000': not a valid code",
        ),
        10_001: (changed(10_001, grade="特等品"), "grade (index 2011) = '特等品': not one of"),
        25_000: (
            changed(25_000, widthCm="900"),
            "widthCm (index 2006) = '900': above the maximum 400 cm",
        ),
        40_000: (changed(40_000, rollNumber=""), "rollNumber (index 2009): required, missing"),
        55_555: (changed(55_555, productionDate="2026-02-30"), "not a date (YYYY-MM-DD)"),
        60_000: (roll_row(60_000)[:-2], "has 15 cells, the header 17"),
        70_000: (changed(70_000, handle="88.118.2/"), "handle"),
        80_000: (
            changed(80_000, handle="88.118.9/ROLL-X-1"),
            "prefix 88.118.9 is not registered on this node",
        ),
        90_000: (
            changed(90_000, handle=roll_handle(12)),
            f"handle {roll_handle(12)} exists with other values",
        ),
        # The same handle twice in one chunk: the second is compared with the first.
        90_005: (changed(90_005, handle=roll_handle(90_003)), "line 90005 gave handle"),
    }


def rows_with(bad: dict[int, tuple[list[str], str]]) -> Iterable[list[str]]:
    for n, row in enumerate(rolls(ROWS)):
        yield bad[n][0] if n in bad else row


async def test_a_hundred_thousand_rolls_with_bad_rows(
    registry: Registry, database_url: str
) -> None:
    signer = make_signer()
    bad = bad_rows()
    data = csv_text(rows_with(bad)).encode("utf-8")
    chunks: list[ChunkOutcome] = []

    async def on_chunk(outcome: ChunkOutcome, rows: int) -> None:
        chunks.append(outcome)

    request = ImportRequest("rolls-1", "cli:test", "test", "csv", ROLL.handle)
    summary = await importer(registry, signer).run(blocks(data), request, on_chunk)

    assert (summary.rows, summary.rejected, summary.loaded) == (ROWS, len(bad), ROWS - len(bad))
    assert summary.job.state == "done" and summary.job.through_line == ROWS + 1
    assert [c.job.through_line for c in chunks] == [20_001, 40_001, 60_001, 80_001, 100_001]
    rejected = [r for c in chunks for r in c.rejected]
    # Line numbers count the header: data row n is on line n + 2.
    assert [r.line for r in rejected] == [n + 2 for n in sorted(bad)]
    for r, n in zip(rejected, sorted(bad), strict=True):
        assert bad[n][1] in r.reason, (r, bad[n][1])
    first = rejected[0]
    assert first.handle == roll_handle(7)
    assert [(p.key, p.index, p.value) for p in first.problems] == [
        ("fabricCode", 2000, "30121000750720000")
    ]
    assert first.problems[0].rule.startswith("not a valid code")
    assert await ImportStore(registry).rejects("rolls-1") == rejected

    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval(
            "SELECT count(*) FROM handles WHERE prefix_key = '88.118.2'"
        ) == ROWS - len(bad)
        assert await conn.fetchval(
            "SELECT count(*) FROM handle_history WHERE actor = 'cli:test'"
        ) == ROWS - len(bad)
        # Three searchable fields per roll: fabric code, roll number and dye lot.
        assert await conn.fetchval(
            "SELECT count(*) FROM handle_fields WHERE template_key = $1", normalise(ROLL.handle)
        ) == 3 * (ROWS - len(bad))
        found = await conn.fetch(
            "SELECT handle_key FROM handle_fields WHERE field = 'rollNumber' AND value = $1",
            "P20260031415",
        )
        assert [r[0] for r in found] == [normalise(roll_handle(31415))]
    finally:
        await conn.close()

    certs = {f"{v.index}:0.NA/88.118": v.data.decode() for v in signer.cert_values("88.118", NOW_S)}
    assert signer.root_public is not None
    for n in (0, 12, 50_000, ROWS - 1):
        record = await registry.get_handle(normalise(roll_handle(n)))
        assert record is not None
        report = verify_record(
            record.handle, record.values, certs=certs, roots=[signer.root_public], now=NOW_S
        )
        assert report.ok, report
        fields = {v.type: v.data.decode() for v in record.values if v.index >= 2000}
        assert fields == roll_fields(n)


async def test_signature_is_the_write_services(registry: Registry) -> None:
    """The bulk path signs exactly what RecordSigner.sign would sign at the same time:
    the same JWS header and claims (only ECDSA's random nonce differs)."""
    signer = make_signer()
    data = csv_text(rolls(3)).encode()
    request = ImportRequest("sig", "cli:test", "test", "csv", ROLL.handle)
    await importer(registry, signer).run(blocks(data), request)
    record = await registry.get_handle(normalise(roll_handle(1)))
    assert record is not None
    body = [v for v in record.values if not is_signature(v)]
    mine = next(v for v in record.values if is_signature(v))
    theirs = signer.sign(record.handle, body, NOW_S)
    assert theirs is not None
    reference = next(v for v in theirs if is_signature(v))
    assert (mine.index, mine.ttl, mine.permissions, mine.timestamp) == (
        reference.index,
        reference.ttl,
        reference.permissions,
        reference.timestamp,
    )
    assert jws_parse(mine.data).signing_input == jws_parse(reference.data).signing_input


async def test_ndjson_fields_values_and_templates_met_on_the_way(registry: Registry) -> None:
    lines = [
        {"handle": roll_handle(1), "template": ROLL.handle, "fields": roll_fields(1)},
        {"handle": roll_handle(2), "fields": roll_fields(2)},  # no template: refused
        {
            "handle": "88.118.2/NOTE-1",
            "values": [
                {
                    "index": 1,
                    "type": "URL",
                    "data": {"format": "string", "value": "https://example.com/n"},
                }
            ],
        },
        {
            "handle": "88.118.2/NOTE-2",
            "values": [{"index": 300, "type": "HS_SECKEY", "data": "s3cret"}],
        },
        {
            "handle": roll_handle(3),
            "template": ROLL.handle,
            "fields": {**roll_fields(3), "shade": "x"},
        },
        {"handle": "88.118.2/TPL-MISSING", "template": "88.118/TPL.NOPE.V1", "fields": {"a": "b"}},
        "not an object",
    ]
    data = b"".join(orjson.dumps(line) + b"\n" for line in lines) + b"{broken\n"
    request = ImportRequest("nd", "cli:test", "test", "ndjson")
    summary = await importer(registry, None).run(blocks(data, 7), request)
    assert (summary.loaded, summary.rejected) == (2, 6)
    reasons = [(r.line, r.reason) for r in await ImportStore(registry).rejects("nd")]
    assert [line for line, _ in reasons] == [2, 4, 5, 6, 7, 8]
    assert '"fields" without a template' in reasons[0][1]
    assert "HS_SECKEY secrets are not imported in bulk" in reasons[1][1]
    assert "shade" in reasons[2][1] and "no such field" in reasons[2][1]
    assert "88.118/TPL.NOPE.V1" in reasons[3][1] and "no such template" in reasons[3][1]
    assert reasons[4][1] == "not a JSON object"
    assert reasons[5][1].startswith("not JSON")
    record = await registry.get_handle(normalise(roll_handle(1)))
    assert record is not None and not any(is_signature(v) for v in record.values)  # no signer


async def test_a_finished_job_does_nothing_again_and_a_new_one_finds_everything(
    registry: Registry,
) -> None:
    data = csv_text(rolls(500)).encode()
    request = ImportRequest("again", "cli:test", "test", "csv", ROLL.handle)
    first = await importer(registry, None, chunk_rows=100).run(blocks(data), request)
    assert (first.loaded, first.job.through_line) == (500, 501)
    rerun = await importer(registry, None).run(blocks(data), request)
    assert (rerun.rows, rerun.resumed_after, rerun.job.loaded) == (0, 501, 500)
    fresh = ImportRequest("again-2", "cli:test", "test", "csv", ROLL.handle)
    second = await importer(registry, make_signer()).run(blocks(data), fresh)
    assert (second.loaded, second.existing, second.rejected) == (0, 500, 0)


async def test_an_unusable_header_stops_the_import(registry: Registry) -> None:
    for header, message in (
        (["handle", "fabricCode", "colour", "shade"], "the column 'shade' is not a field"),
        (["fabricCode", "colour"], "no handle column"),
        (["handle", "colour", "Colour"], "appears twice"),
        (
            ["handle", "colour"],
            "lacks the required fields of 88.118/TPL.TEXTILE.ROLL.V1: fabricCode",
        ),
    ):
        out = io.StringIO()
        csv.writer(out).writerow(header)
        request = ImportRequest("h-" + header[-1], "cli:test", "test", "csv", ROLL.handle)
        with pytest.raises(ImportRefused, match=message):
            await importer(registry, None).run(blocks(out.getvalue().encode()), request)
    request = ImportRequest("nope", "cli:test", "test", "csv", "88.118/TPL.NOPE.V1")
    with pytest.raises(ImportRefused, match="no such template"):
        await importer(registry, None).run(blocks(b"handle\n"), request)


def test_rows_of_a_header_without_a_required_field_are_refused() -> None:
    """The preparer does not rely on the importer's header check."""
    header = ("handle", "colour")
    batch = Batch(
        "csv",
        [2],
        [b"88.118.2/R-1,\xe8\x97\x8f\xe9\x9d\x92"],
        NOW_S,
        header,
        ROLL.handle,
        {ROLL.handle.upper(): ROLL},
    )
    out = RowPreparer(None).prepare(batch)
    assert not out.rows
    (refused,) = out.rejected
    assert (
        refused.handle == "88.118.2/R-1"
        and "fabricCode (index 2000): required, missing" in refused.reason
    )


def test_splitter_keeps_quoted_line_breaks_and_numbers_lines() -> None:
    text = b'\xef\xbb\xbfhandle,colour\r\n88.118.2/A,"red\nand blue"\n\n88.118.2/B,"say ""hi"""\n'
    for size in (1, 3, len(text)):
        splitter = RecordSplitter("csv")
        found = []
        for at in range(0, len(text), size):
            found += splitter.feed(text[at : at + size])
        found += splitter.end()
        assert found == [
            (1, b"handle,colour", 1),
            (2, b'88.118.2/A,"red\nand blue"', 3),
            (5, b'88.118.2/B,"say ""hi"""', 5),
        ]
    splitter = RecordSplitter("ndjson", max_record_bytes=10)
    with pytest.raises(ImportRefused, match="line 1 is longer than 10 bytes"):
        splitter.feed(b"x" * 11)
    unclosed = RecordSplitter("csv")
    unclosed.feed(b'a,"b\n')
    with pytest.raises(ImportRefused, match="never closed"):
        unclosed.end()
