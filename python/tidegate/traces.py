"""Reading traces: by id (one index query, one ranged GET per block holding part of the
trace) and search over the index. SQL texts are constants; every filter is a bound
parameter (a NULL parameter disables its filter). Every read is of one tenant's index rows:
another tenant's trace is not found, even by its id."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import re
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

import asyncpg

from tidegate._core import DecodeError, attribute_hash, read_trace_json, read_trace_protobuf
from tidegate.config import DEFAULT_TENANT, Config
from tidegate.errors import QueryError, TidegateError
from tidegate.object_store import BlockNotFound, ObjectStore, open_store

TRACE_ID = re.compile(r"[0-9a-fA-F]{1,32}")
STATUSES = {"unset": 0, "ok": 1, "error": 2}
STATUS_NAMES = {v: k for k, v in STATUSES.items()}
MAX_LIMIT = 10_000

# A left join: an index row whose block row is gone names its block id in the error.
FRAMES_SQL = """
SELECT i.block_id, b.block_key, b.dictionary, i.frame_offset, i.frame_length
FROM trace_index AS i LEFT JOIN trace_blocks AS b USING (block_id)
WHERE i.trace_id = $1 AND i.tenant = $2
ORDER BY i.start_time, i.block_id, i.frame_offset
"""
# A search first reads the window's index rows newest first, a page at a time (keyset on
# (start_time, trace_id)), and aggregates only the traces a page names, all of their rows in
# the window included. It stops once no trace not yet seen can rank among the results: the
# newest traces of an hour then cost a few hundred rows, not the hour. A root name, else a
# status, narrows the pages (a matching trace has a row with it; not both on one row); a
# duration cannot (a trace's rows in several blocks make it), so when the pages would read
# more than PAGED_ROWS rows, one query aggregates the whole window, as every search did
# before. All of it reads one snapshot.
PAGE_SQL = """
SELECT trace_id, start_time
FROM trace_index
WHERE tenant = $1 AND start_time >= $2 AND start_time <= $3
  AND (start_time, trace_id) < ($3, $4)
  AND ($5::text IS NULL OR service = $5)
  AND ($6::integer IS NULL OR attributes @> ARRAY[$6::integer])
  AND ($7::text IS NULL OR root_name = $7)
  AND ($8::int IS NULL OR status = $8)
ORDER BY start_time DESC, trace_id DESC
LIMIT $9
"""
_AGGREGATE_SQL = """
SELECT trace_id, min(start_time) AS start, max(end_time) AS end_time,
       sum(span_count)::bigint AS span_count, max(status) AS status,
       (array_agg(service ORDER BY root_name IS NULL, start_time))[1] AS service,
       (array_agg(root_name ORDER BY root_name IS NULL, start_time))[1] AS root_name
FROM trace_index
WHERE tenant = $9 AND start_time >= $1 AND start_time < $2
  AND ($3::text IS NULL OR service = $3)
  AND ($4::integer IS NULL OR attributes @> ARRAY[$4::integer])
  {traces}
GROUP BY trace_id
HAVING ($5::text IS NULL OR bool_or(root_name = $5))
   AND ($6::bigint IS NULL OR extract(epoch FROM max(end_time) - min(start_time)) * 1e9 >= $6)
   AND ($7::bigint IS NULL OR extract(epoch FROM max(end_time) - min(start_time)) * 1e9 <= $7)
   AND ($8::int IS NULL OR max(status) = $8)
"""
# The traces of one page ($10: their ids).
TRACES_SQL = _AGGREGATE_SQL.format(traces="AND trace_id = ANY($10::bytea[])")
# The whole window ($10: the limit).
SEARCH_SQL = (
    _AGGREGATE_SQL.format(traces="") + "ORDER BY min(start_time) DESC, trace_id DESC\nLIMIT $10\n"
)
# Rows of the first page (at least; four times the limit when that is more), how much larger
# each next page is, and how many rows the pages may read in all before the whole window is
# aggregated instead.
FIRST_PAGE_ROWS = 64
PAGE_GROWTH = 4
PAGED_ROWS = 20_000


def _snapshot(conn: asyncpg.Connection) -> AbstractAsyncContextManager[object]:
    """One read-only snapshot for a search's queries (the caller's transaction when one is
    open), so that rows committed meanwhile neither split a trace nor slip past the pages."""
    if conn.is_in_transaction():
        return contextlib.nullcontext()
    transaction: AbstractAsyncContextManager[object] = conn.transaction(
        isolation="repeatable_read", readonly=True
    )
    return transaction


async def open_trace_store(config: Config) -> ObjectStore:
    """The trace store the configuration names (the local default when it names none)."""
    s3 = config.s3
    return await open_store(
        config.trace_store_url(),
        endpoint_url=s3.endpoint_url or None,
        region=s3.region or None,
        access_key_id=s3.access_key_id or None,
        secret_access_key=s3.secret_access_key or None,
    )


class TraceNotFoundError(TidegateError, LookupError):
    """No span of this trace is in the index."""


class CorruptBlockError(TidegateError):
    """A block the index points to is missing or does not decode; the message names it."""


def parse_trace_id(text: str) -> bytes:
    """A trace id as 1-32 hex digits (shorter ids are left-padded with zeros, as Tempo does)."""
    if not TRACE_ID.fullmatch(text):
        raise QueryError(f"trace id must be 1 to 32 hex digits, got {text!r}")
    return bytes.fromhex(text.rjust(32, "0"))


async def _frames(
    conn: asyncpg.Connection, store: ObjectStore, trace_id: bytes, tenant: str
) -> list[tuple[bytes, bytes]]:
    """(frame, its block's dictionary) of every index row of the trace."""
    rows = await conn.fetch(FRAMES_SQL, trace_id, tenant)
    if not rows:
        raise TraceNotFoundError(f"trace {trace_id.hex()} not found")

    async def fetch(row: asyncpg.Record) -> tuple[bytes, bytes]:
        key = row["block_key"]
        if key is None:
            raise CorruptBlockError(
                f"block {row['block_id']} of trace {trace_id.hex()} has no trace_blocks row"
            )
        try:
            data: bytes = await store.get_range(key, row["frame_offset"], row["frame_length"])
        except BlockNotFound as exc:
            raise CorruptBlockError(
                f"block {key} of trace {trace_id.hex()} is missing: {exc}"
            ) from exc
        return data, row["dictionary"]

    return list(await asyncio.gather(*(fetch(r) for r in rows)))


async def get_trace(
    conn: asyncpg.Connection,
    store: ObjectStore,
    trace_id: str,
    *,
    tempo: bool = False,
    tenant: str = DEFAULT_TENANT,
) -> dict[str, Any]:
    """The spans ``tenant`` stored of the trace, as an OTLP JSON document
    (``{"resourceSpans": ...}``, or Tempo's ``{"batches": ...}``), each span once;
    ``TraceNotFoundError`` when that tenant stored none."""
    document = await get_trace_json(conn, store, trace_id, tempo=tempo, tenant=tenant)
    return json.loads(document)  # type: ignore[no-any-return]


async def get_trace_json(
    conn: asyncpg.Connection,
    store: ObjectStore,
    trace_id: str,
    *,
    tempo: bool = False,
    tenant: str = DEFAULT_TENANT,
) -> str:
    """``get_trace`` as JSON text."""
    tid = parse_trace_id(trace_id)
    frames = await _frames(conn, store, tid, tenant)
    try:
        return await asyncio.to_thread(read_trace_json, frames, tempo=tempo)
    except DecodeError as exc:
        raise CorruptBlockError(f"trace {tid.hex()}: a block frame does not decode: {exc}") from exc


async def get_trace_protobuf(
    conn: asyncpg.Connection, store: ObjectStore, trace_id: str, *, tenant: str = DEFAULT_TENANT
) -> bytes:
    """The spans ``tenant`` stored of the trace as an encoded OTLP ``TracesData`` (Tempo's
    protobuf answer)."""
    tid = parse_trace_id(trace_id)
    frames = await _frames(conn, store, tid, tenant)
    try:
        return await asyncio.to_thread(read_trace_protobuf, frames)
    except DecodeError as exc:
        raise CorruptBlockError(f"trace {tid.hex()}: a block frame does not decode: {exc}") from exc


@dataclass(frozen=True)
class TraceMatch:
    """One search result."""

    trace_id: str
    start: dt.datetime
    duration_ns: int
    span_count: int
    status: str
    service: str
    root_name: str | None


async def search(
    conn: asyncpg.Connection,
    *,
    start: dt.datetime,
    end: dt.datetime,
    service: str | None = None,
    name: str | None = None,
    min_duration: dt.timedelta | None = None,
    max_duration: dt.timedelta | None = None,
    status: str | None = None,
    attribute: str | None = None,
    limit: int = 20,
    tenant: str = DEFAULT_TENANT,
) -> list[TraceMatch]:
    """Traces of ``tenant`` that started in ``[start, end)``, newest first (only that
    tenant's index rows count). ``name`` is the root span's name; ``attribute`` is
    ``key=value`` of a span attribute; ``status`` is ok, error or unset."""
    if start >= end:
        raise QueryError("search start must be before end")
    if status is not None and status not in STATUSES:
        raise QueryError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
    if attribute is not None and "=" not in attribute:
        raise QueryError(f"attribute must be key=value, got {attribute!r}")
    if not 1 <= limit <= MAX_LIMIT:
        raise QueryError(f"limit must be between 1 and {MAX_LIMIT}")

    def ns(d: dt.timedelta | None) -> int | None:
        return None if d is None else d // dt.timedelta(microseconds=1) * 1000

    attribute_key = None if attribute is None else attribute_hash(attribute)
    status_code = None if status is None else STATUSES[status]
    having = (name, ns(min_duration), ns(max_duration), status_code)
    window = (start, end, service, attribute_key, *having, tenant)

    def rank(r: asyncpg.Record) -> tuple[dt.datetime, bytes]:
        return (r["start"], r["trace_id"])

    # The best `limit` matches so far, newest first.
    ranked: list[asyncpg.Record] = []
    cursor: tuple[dt.datetime, bytes] = (end, b"")
    page_rows = max(FIRST_PAGE_ROWS, 4 * limit)
    read = 0
    # Status narrows the pages only without a name: the two may be on different rows.
    page_status = status_code if name is None else None
    async with _snapshot(conn):
        while True:
            if read + page_rows > PAGED_ROWS:
                ranked = list(await conn.fetch(SEARCH_SQL, *window, limit))
                break
            narrowing = (service, attribute_key, name, page_status)
            page = await conn.fetch(PAGE_SQL, tenant, start, *cursor, *narrowing, page_rows)
            read += len(page)
            if page:
                traces = list(dict.fromkeys(r["trace_id"] for r in page))
                found = await conn.fetch(TRACES_SQL, *window, traces)
                best = {r["trace_id"]: r for r in [*ranked, *found]}
                ranked = sorted(best.values(), key=rank, reverse=True)[:limit]
                cursor = (page[-1]["start_time"], page[-1]["trace_id"])
            # A trace not seen yet has a row before the cursor, and starts no later.
            if len(page) < page_rows or (len(ranked) == limit and rank(ranked[-1]) >= cursor):
                break
            page_rows *= PAGE_GROWTH
    return [
        TraceMatch(
            trace_id=r["trace_id"].hex(),
            start=r["start"],
            duration_ns=(r["end_time"] - r["start"]) // dt.timedelta(microseconds=1) * 1000,
            span_count=r["span_count"],
            status=STATUS_NAMES.get(r["status"], "unset"),
            service=r["service"],
            root_name=r["root_name"],
        )
        for r in ranked
    ]
