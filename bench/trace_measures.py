"""What the trace benchmark reads back: the daemon's counters, PostgreSQL's index, lookups.

The daemon's ``/metrics`` (spans stored and dropped, blocks written), the spans, rows and bytes
of ``trace_index`` in a database of one embedded PostgreSQL server, the wait until every
acknowledged span is indexed, and the timing of ``tidegate.traces.get_trace`` over known traces
and of ``tidegate.traces.search`` over the last hour.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import re
import statistics
import sys
import time
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from tidegate.config import Config
from tidegate.traces import get_trace, open_trace_store, search

INDEX_TIMEOUT_S = 300.0
# The index partitions and the blocks' rows (their keys and frame dictionaries).
INDEX_SIZE_SQL = (
    "SELECT (coalesce(sum(pg_total_relation_size(inhrelid)), 0)"
    " + coalesce(pg_total_relation_size(to_regclass('trace_blocks')), 0))::bigint"
    " FROM pg_inherits WHERE inhparent = 'trace_index'::regclass"
)
INDEXED_SQL = "SELECT coalesce(sum(span_count), 0)::bigint, count(*) FROM trace_index"
# Counters of the daemon's /metrics this benchmark reads.
BLOCKS_OK = 'tidegate_trace_blocks_total{outcome="ok"}'
SPANS_STORED = "tidegate_spans_stored_total"
SPANS_DROPPED = "tidegate_spans_dropped_total"
METRIC_LINE = re.compile(r"^(\w+(?:\{[^}]*\})?) (\S+)$", re.MULTILINE)


def quantile(samples: list[float], q: float) -> float:
    if not samples:
        return math.nan
    if len(samples) < 2:
        return samples[0]
    return statistics.quantiles(samples, n=1000, method="inclusive")[round(q * 1000) - 1]


def scrape(metrics_url: str) -> dict[str, float]:
    """Every sample of the daemon's /metrics, by name with labels; series of a labelled
    family summed under the bare name too."""
    with urllib.request.urlopen(metrics_url, timeout=10) as answer:
        text = answer.read().decode()
    samples: dict[str, float] = {}
    for name, value in METRIC_LINE.findall(text):
        samples[name] = float(value)
        if "{" in name:
            bare = name.split("{", 1)[0]
            samples[bare] = samples.get(bare, 0.0) + float(value)
    return samples


def blocks_ok(metrics_url: str) -> float:
    return scrape(metrics_url).get(BLOCKS_OK, 0.0)


# --- PostgreSQL -------------------------------------------------------------------------------


def database_dsn(server_dsn: str, name: str) -> str:
    parts = urlsplit(server_dsn)
    return urlunsplit(parts._replace(path=f"/{name}"))


async def create_database(server_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(server_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def indexed(dsn: str) -> tuple[int, int]:
    """(spans, rows) of ``trace_index``."""
    conn = await asyncpg.connect(dsn)
    try:
        spans, rows = await conn.fetchrow(INDEXED_SQL)
        return int(spans), int(rows)
    finally:
        await conn.close()


async def _wait_indexed(dsn: str, metrics_url: str, expected: int, timeout_s: float) -> float:
    """Wait until ``expected`` spans are indexed; the time.monotonic() they were.

    The daemon's stored-spans counter (raised after each commit) is polled, because a
    ``sum(span_count)`` over millions of index rows every 0.1 s would load the PostgreSQL
    being measured; the sum is then checked once (and polled slowly should it disagree)."""
    deadline = time.monotonic() + timeout_s
    stored = 0.0
    while True:
        samples = await asyncio.to_thread(scrape, metrics_url)
        stored, now = samples.get(SPANS_STORED, 0.0), time.monotonic()
        if samples.get(SPANS_DROPPED, 0.0):
            raise RuntimeError(f"the daemon dropped {samples[SPANS_DROPPED]:,.0f} spans")
        if stored >= expected or now > deadline:
            break
        await asyncio.sleep(0.1)
    conn = await asyncpg.connect(dsn)
    try:
        while True:
            spans = int((await conn.fetchrow(INDEXED_SQL))[0])
            if spans == expected:
                return now
            if spans > expected:
                raise RuntimeError(f"{spans:,} spans indexed, only {expected:,} acknowledged")
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"lost spans: {spans:,} of {expected:,} acknowledged spans indexed after"
                    f" {timeout_s:.0f} s (the daemon counts {stored:,.0f} stored)"
                )
            await asyncio.sleep(0.5)
            now = time.monotonic()
    finally:
        await conn.close()


def wait_indexed(dsn: str, metrics_url: str, expected: int) -> float:
    return asyncio.run(_wait_indexed(dsn, metrics_url, expected, INDEX_TIMEOUT_S))


async def index_size(dsn: str) -> int:
    """Bytes of the ``trace_index`` partitions and of ``trace_blocks``, their indexes and
    TOAST included."""
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval(INDEX_SIZE_SQL))
    finally:
        await conn.close()


# --- trace by id ------------------------------------------------------------------------------


class TimedConnection:
    """Delegates to an asyncpg connection; records how long each ``fetch`` took."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        self.fetch_s = 0.0

    async def fetch(self, query: str, *args: Any) -> list[Any]:
        started = time.perf_counter()
        rows = await self._conn.fetch(query, *args)
        self.fetch_s += time.perf_counter() - started
        return list(rows)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


@dataclass
class LookupFigures:
    lookups: int
    p50_ms: float
    p95_ms: float
    max_ms: float
    index_sql_p50_ms: float
    frames_per_trace: float
    wrong: int


def _count_spans(document: dict[str, Any], trace_id: str) -> int:
    n = 0
    for rs in document["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for span in ss["spans"]:
                if span["traceId"] != trace_id:
                    raise RuntimeError(f"trace {trace_id} returned a span of {span['traceId']}")
                n += 1
    return n


async def lookups(
    dsn: str, config: Config, picks: list[tuple[str, int]], warmup: int
) -> LookupFigures:
    """Fetch each (trace id, span count) of ``picks`` by id; the first ``warmup`` untimed."""
    conn = await asyncpg.connect(dsn)
    store = await open_trace_store(config)
    try:
        timed = TimedConnection(conn)
        totals, sql = [], []
        wrong = 0
        frames = 0
        for i, (trace_id, expected) in enumerate(picks):
            timed.fetch_s = 0.0
            started = time.perf_counter()
            document = await get_trace(timed, store, trace_id)  # type: ignore[arg-type]
            elapsed = time.perf_counter() - started
            got = _count_spans(document, trace_id)
            if got != expected:
                wrong += 1
                print(f"trace {trace_id}: {got} spans, expected {expected}", file=sys.stderr)
            if i < warmup:
                continue
            totals.append(elapsed * 1000)
            sql.append(timed.fetch_s * 1000)
            frames += int(
                await conn.fetchval(
                    "SELECT count(*) FROM trace_index WHERE trace_id = $1", bytes.fromhex(trace_id)
                )
            )
        return LookupFigures(
            lookups=len(totals),
            p50_ms=statistics.median(totals),
            p95_ms=quantile(totals, 0.95),
            max_ms=max(totals),
            index_sql_p50_ms=statistics.median(sql),
            frames_per_trace=frames / len(totals),
            wrong=wrong,
        )
    finally:
        await store.close()
        await conn.close()


# --- search -----------------------------------------------------------------------------------

# The searches timed, newest 20 traces of the last hour each: what someone looking for traces
# asks first, and one no trace matches (the whole window is read).
SEARCHES: dict[str, dict[str, Any]] = {
    "any": {},
    "service": {"service": "checkout"},
    "error": {"status": "error"},
    "attribute": {"attribute": "http.status_code=500"},
    "root name": {},  # the newest root name stored, read first
    ">= 50 ms": {"min_duration": dt.timedelta(milliseconds=50)},
    ">= 1 h (none)": {"min_duration": dt.timedelta(hours=1)},
}
SEARCH_REPEATS = 3


async def searches(dsn: str) -> dict[str, float]:
    """Median milliseconds of each of ``SEARCHES`` (``SEARCH_REPEATS`` runs), in order."""
    conn = await asyncpg.connect(dsn)
    try:
        end = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
        window = {"start": end - dt.timedelta(hours=1), "end": end, "limit": 20}
        name = await conn.fetchval(
            "SELECT root_name FROM trace_index WHERE root_name IS NOT NULL"
            " ORDER BY start_time DESC LIMIT 1"
        )
        medians = {}
        for label, filters in SEARCHES.items():
            if label == "root name":
                filters = {"name": name}
            times = []
            for _ in range(SEARCH_REPEATS):
                started = time.perf_counter()
                await search(conn, **window, **filters)
                times.append((time.perf_counter() - started) * 1000)
            medians[label] = statistics.median(times)
        return medians
    finally:
        await conn.close()
