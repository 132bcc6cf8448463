"""Migration 0006 (trace_blocks, lean index rows) keeps traces written before it readable and
searchable: a database at version 5 with an index row in the old shape (block key text,
64-bit attribute hashes) is migrated, and the trace comes back by id and by attribute search
from its block in a real file store; the block's id is the one the core gives the same bytes
now. And the writer's block-row statement answers with the key an id already names."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import asyncpg
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from tidegate import schema
from tidegate._core import TraceCore, TraceSettings, attribute_hash
from tidegate.object_store import FileStore
from tidegate.trace_writer import BLOCK_ROW_SQL
from tidegate.traces import get_trace, search

TRACE_ID = bytes(range(1, 17))
START = dt.datetime(2026, 11, 27, 10, 0, tzinfo=dt.UTC)
PAIR = "http.route=/pay"


def _request() -> bytes:
    start_ns = int(START.timestamp()) * 1_000_000_000
    span = Span(
        trace_id=TRACE_ID,
        span_id=b"\x07" * 8,
        name="POST /pay",
        start_time_unix_nano=start_ns,
        end_time_unix_nano=start_ns + 2_000_000,
        attributes=[KeyValue(key="http.route", value=AnyValue(string_value="/pay"))],
    )
    resource_spans = ResourceSpans(scope_spans=[ScopeSpans(spans=[span])])
    resource_spans.resource.attributes.add(
        key="service.name", value=AnyValue(string_value="checkout")
    )
    return ExportTraceServiceRequest(resource_spans=[resource_spans]).SerializeToString()


def _old_hash(pair: str, high: int) -> int:
    """A 64-bit hash as the old index held it: ``high`` above the new hash's 32 bits."""
    value = (high << 32) | (attribute_hash(pair) & 0xFFFFFFFF)
    return value - (1 << 64) if value >= 1 << 63 else value


Outcome = tuple[dict[str, object], list[str], list[int], int]


async def _scenario(dsn: str, root: Path) -> tuple[Outcome, int]:
    # A frame in the old format: one trace compressed alone (no dictionary).
    core = TraceCore(TraceSettings(dictionary_bytes=0))
    core.ingest(_request(), int(START.timestamp()) * 1_000_000_000)
    block = core.take_block(0, force=True)
    assert block is not None
    assert block.dictionary == b""
    store = FileStore(root)
    await store.put(block.key, block.data)

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            """CREATE TABLE tidegate_migrations (version integer PRIMARY KEY, name text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        for migration in schema.available():
            if migration.version < 6:
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO tidegate_migrations VALUES ($1, $2)",
                    migration.version,
                    migration.name,
                )
        await conn.execute("SELECT tidegate_ensure_day($1)", START.date())
        hashes = [_old_hash(PAIR, 0x7FFF_0001), _old_hash("http.method=POST", -5)]
        await conn.execute(
            """INSERT INTO trace_index (trace_id, block_key, frame_offset, frame_length,
                   start_time, end_time, service, root_name, status, span_count, attributes)
               VALUES ($1, $2, 0, $3, $4, $5, 'checkout', 'POST /pay', 0, 1, $6)""",
            TRACE_ID,
            block.key,
            len(block.data),
            START,
            START + dt.timedelta(milliseconds=2),
            hashes,
        )
        assert await schema.apply(conn) == [m.version for m in schema.available()][5:]
        attributes = await conn.fetchval("SELECT attributes FROM trace_index")
        block_id = await conn.fetchval("SELECT block_id FROM trace_index")
        document = await get_trace(conn, store, TRACE_ID.hex())
        found = await search(
            conn,
            start=START - dt.timedelta(minutes=1),
            end=START + dt.timedelta(minutes=1),
            attribute=PAIR,
        )
        return (document, [m.trace_id for m in found], attributes, block_id), block.id
    finally:
        await conn.close()


def test_traces_written_before_the_migration_are_read_and_found(
    database_dsn: str, tmp_path: Path
) -> None:
    (document, found, attributes, block_id), core_id = asyncio.run(
        _scenario(database_dsn, tmp_path / "traces")
    )
    assert block_id == core_id
    assert attributes == [attribute_hash(PAIR), attribute_hash("http.method=POST")]
    spans = document["resourceSpans"][0]["scopeSpans"][0]["spans"]  # type: ignore[index]
    assert [s["name"] for s in spans] == ["POST /pay"]
    assert spans[0]["endTimeUnixNano"] == str(int(START.timestamp()) * 10**9 + 2_000_000)
    assert found == [TRACE_ID.hex()]


async def _block_rows(dsn: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        await schema.apply(conn)
        first = "blocks/2026/11/27/10/aa.tgb"
        return [
            await conn.fetchval(BLOCK_ROW_SQL, 7, first, b"dict"),
            await conn.fetchval(BLOCK_ROW_SQL, 7, first, b"dict"),  # a retried commit
            await conn.fetchval(BLOCK_ROW_SQL, 7, "blocks/2026/11/27/11/aa.tgb", b""),
            await conn.fetchval(BLOCK_ROW_SQL, 8, "blocks/2026/11/27/11/bb.tgb", b""),
            await conn.fetchval("SELECT count(*) FROM trace_blocks"),
        ]
    finally:
        await conn.close()


def test_the_block_row_statement_names_the_key_an_id_already_has(database_dsn: str) -> None:
    assert asyncio.run(_block_rows(database_dsn)) == [
        "blocks/2026/11/27/10/aa.tgb",
        "blocks/2026/11/27/10/aa.tgb",
        "blocks/2026/11/27/10/aa.tgb",
        "blocks/2026/11/27/11/bb.tgb",
        2,
    ]
