"""What reached storage, compared with the ledger: missing and duplicated points and spans.

Metrics, by SQL: each stored point's stamp (its series' ``gen`` attribute and its value, the
sequence); a (series, time) stored twice; rollup ``count`` summed per series against the raw
points of the series (window and hour rows must each equal them once the daemon has stopped).
Traces: through the index with the project's reading API (``get_trace_protobuf``), and
independently by listing every block object and decoding every frame, so a block uploaded
but never indexed (a crash between the two) shows up as unindexed spans and an orphan block.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import asyncpg
from opentelemetry.proto.trace.v1 import trace_pb2

from tests.faults.blocks import BlockStore, frame_lengths, frame_spans
from tests.faults.daemon_process import S3Settings
from tests.faults.generator import METRIC_NAME, span_stamp
from tests.faults.ledger import METRICS, TRACES, Ledger, Outcome
from tests.faults.report import FaultReport, RollupCounts, SignalCounts, TraceStorage
from tidegate._core import DecodeError
from tidegate.object_store import ObjectStore, open_store
from tidegate.traces import CorruptBlockError, get_trace_protobuf

Stamp = tuple[int, int]
EXAMPLES = 8

STAMPS_SQL = """
SELECT (s.attributes->>'gen')::int AS gen, v::bigint AS seq, count(*)::int AS n
FROM point_chunks AS c JOIN series AS s ON s.id = c.series_id
CROSS JOIN LATERAL unnest(c.point_values) AS v
WHERE s.metric_name = $1 GROUP BY 1, 2
"""
SAME_KEY_SQL = """
SELECT coalesce(sum(n - 1), 0)::bigint FROM (
  SELECT c.series_id, t, count(*) AS n
  FROM point_chunks AS c JOIN series AS s ON s.id = c.series_id
  CROSS JOIN LATERAL unnest(c.point_times) AS t
  WHERE s.metric_name = $1 GROUP BY 1, 2 HAVING count(*) > 1) AS d
"""
ROLLUP_SQL = """
WITH raw AS (
  SELECT c.series_id, count(DISTINCT t) AS points
  FROM point_chunks AS c JOIN series AS s ON s.id = c.series_id
  CROSS JOIN LATERAL unnest(c.point_times) AS t
  WHERE s.metric_name = $1 GROUP BY 1),
r AS (
  SELECT series_id,
         coalesce(sum(count) FILTER (WHERE window_seconds <> 3600), 0) AS w,
         coalesce(sum(count) FILTER (WHERE window_seconds = 3600), 0) AS h
  FROM rollups GROUP BY 1)
SELECT raw.points, coalesce(r.w, 0)::bigint AS w, coalesce(r.h, 0)::bigint AS h
FROM raw LEFT JOIN r USING (series_id)
"""
TOTALS_SQL = """
SELECT (SELECT coalesce(sum(point_count), 0) FROM point_chunks)::bigint AS points,
       (SELECT coalesce(sum(span_count), 0) FROM trace_index)::bigint AS spans
"""


class Checker:
    """Reads storage directly (not through any proxy) after the daemon has drained."""

    def __init__(self, dsn: str, store_url: str, s3: S3Settings | None = None) -> None:
        self.dsn = dsn
        self.store_url = store_url
        self.s3 = s3

    def totals(self) -> tuple[int, int]:
        """Stored points and indexed spans right now."""

        async def fetch() -> tuple[int, int]:
            conn = await asyncpg.connect(self.dsn, timeout=10)
            try:
                row = await conn.fetchrow(TOTALS_SQL)
            finally:
                await conn.close()
            return int(row["points"]), int(row["spans"])

        return asyncio.run(fetch())

    def wait_stable(self, ledger: Ledger, timeout: float = 30.0, quiet: float = 5.0) -> float:
        """Poll until storage holds at least what was acknowledged (and stays so 0.5 s), or
        its counts stop changing for ``quiet`` seconds (longer than a writer's retry backoff
        after an outage); returns the seconds waited."""
        started = time.monotonic()
        want = (ledger.acknowledged_items(METRICS), ledger.acknowledged_items(TRACES))
        last, since = self.totals(), time.monotonic()
        while time.monotonic() - started < timeout:
            time.sleep(0.25)
            now = self.totals()
            if now != last:
                last, since = now, time.monotonic()
                continue
            still = time.monotonic() - since
            if (now[0] >= want[0] and now[1] >= want[1] and still >= 0.5) or still >= quiet:
                break
        return time.monotonic() - started

    def check(self, ledger: Ledger) -> FaultReport:
        return asyncio.run(self._check(ledger))

    async def _check(self, ledger: Ledger) -> FaultReport:
        conn = await asyncpg.connect(self.dsn, timeout=10)
        try:
            rows = await conn.fetch(STAMPS_SQL, METRIC_NAME)
            stored = Counter({(r["gen"], r["seq"]): r["n"] for r in rows})
            rollups = RollupCounts(
                raw_key_duplicates=int(await conn.fetchval(SAME_KEY_SQL, METRIC_NAME))
            )
            for row in await conn.fetch(ROLLUP_SQL, METRIC_NAME):
                rollups.series += 1
                rollups.window_excess += max(0, row["w"] - row["points"])
                rollups.window_deficit += max(0, row["points"] - row["w"])
                rollups.hour_excess += max(0, row["h"] - row["points"])
                rollups.hour_deficit += max(0, row["points"] - row["h"])
            index_rows = await conn.fetch(
                """SELECT i.trace_id, i.frame_offset,
                          coalesce(b.block_key, 'no trace_blocks row for block ' || i.block_id)
                            AS block_key
                   FROM trace_index AS i LEFT JOIN trace_blocks AS b USING (block_id)"""
            )
            dictionaries = {
                r["block_key"]: r["dictionary"]
                for r in await conn.fetch("SELECT block_key, dictionary FROM trace_blocks")
            }
        finally:
            await conn.close()
        visible = await self._visible_spans({r["trace_id"] for r in index_rows})
        storage, indexed = self._scan_blocks(index_rows, dictionaries)
        traces = _counts(TRACES, ledger, visible)
        traces.duplicates = sum(n - 1 for n in indexed.values() if n > 1)
        traces.duplicate_examples = _examples(
            ledger, TRACES, [s for s, n in indexed.items() if n > 1]
        )
        return FaultReport(
            metrics=_counts(METRICS, ledger, stored),
            rollups=rollups,
            traces=traces,
            storage=storage,
            ledger=ledger.summary(),
        )

    async def _visible_spans(self, trace_ids: set[bytes]) -> Counter[Stamp]:
        """Each stamp's spans as the reading API returns the traces (repeats dropped)."""
        s3 = self.s3
        store: ObjectStore = await open_store(
            self.store_url,
            endpoint_url=s3.endpoint_url if s3 else None,
            region=s3.region if s3 else None,
            access_key_id=s3.access_key_id if s3 else None,
            secret_access_key=s3.secret_access_key if s3 else None,
        )
        visible: Counter[Stamp] = Counter()
        try:
            async with asyncpg.create_pool(self.dsn, min_size=1, max_size=8) as pool:

                async def read(trace_id: bytes) -> None:
                    async with pool.acquire() as conn:
                        try:
                            encoded = await get_trace_protobuf(conn, store, trace_id.hex())
                        except CorruptBlockError:
                            return  # counted by the block scan as a missing block
                    for span in _spans(trace_pb2.TracesData.FromString(encoded)):
                        stamp = span_stamp(span)
                        if stamp is not None:
                            visible[stamp] += 1

                await asyncio.gather(*(read(t) for t in trace_ids))
        finally:
            await store.close()
        return visible

    def _scan_blocks(
        self, index_rows: list[asyncpg.Record], dictionaries: dict[str, bytes]
    ) -> tuple[TraceStorage, Counter[Stamp]]:
        """Decode every frame of every listed block (with its dictionary); (what was found,
        span copies the index points at). An orphan block's frames may need a dictionary that
        only its never-committed row held: such a block counts as an orphan, unread."""
        references: Counter[tuple[str, int]] = Counter(
            (r["block_key"], r["frame_offset"]) for r in index_rows
        )
        indexed_keys = {key for key, _ in references}
        store = BlockStore(self.store_url, self.s3)
        keys = store.keys()
        storage = TraceStorage(listed_blocks=len(keys), indexed_blocks=len(indexed_keys))
        storage.orphan_blocks = [k for k in keys if k not in indexed_keys]
        storage.index_missing_blocks = sorted(indexed_keys - set(keys))
        listed: Counter[Stamp] = Counter()
        indexed: Counter[Stamp] = Counter()
        for key in keys:
            block = store.read(key)
            dictionary = dictionaries.get(key, b"")
            for offset, length in frame_lengths(block):
                try:
                    spans = frame_spans(block[offset : offset + length], dictionary)
                except (ValueError, DecodeError):
                    if key in dictionaries:
                        raise
                    break
                stamps = [s for s in map(span_stamp, spans) if s is not None]
                listed.update(stamps)
                refs = references[(key, offset)]
                if refs == 0:
                    storage.unindexed_spans += len(stamps)
                for _ in range(refs):
                    indexed.update(stamps)
        storage.listed_duplicates = sum(n - 1 for n in listed.values() if n > 1)
        return storage, indexed


def _spans(data: trace_pb2.TracesData) -> list[trace_pb2.Span]:
    return [span for rs in data.resource_spans for ss in rs.scope_spans for span in ss.spans]


def _counts(signal: str, ledger: Ledger, stored: Counter[Stamp]) -> SignalCounts:
    counts = SignalCounts(signal)
    promised: set[Stamp] = set()
    for batch in ledger.of(signal, Outcome.ACKNOWLEDGED):
        promised.update((batch.generator, seq) for seq in batch.stamps())
        counts.rejected += batch.rejected_items
    others: set[Stamp] = set()
    for batch in ledger.of(signal):
        if batch.outcome is Outcome.REJECTED:
            counts.refused_batches += 1
        elif batch.outcome is Outcome.UNKNOWN:
            counts.unknown_batches += 1
        if batch.outcome is not Outcome.ACKNOWLEDGED:
            others.update((batch.generator, seq) for seq in batch.stamps())
    counts.acknowledged = len(promised)
    missing = sorted(s for s in promised if not stored.get(s))
    counts.stored_acknowledged = len(promised) - len(missing)
    counts.missing = max(0, len(missing) - counts.rejected)
    counts.missing_examples = _examples(ledger, signal, missing)
    counts.duplicates = sum(n - 1 for n in stored.values() if n > 1)
    counts.duplicate_examples = _examples(ledger, signal, [s for s, n in stored.items() if n > 1])
    counts.stored_unacknowledged = sum(1 for s in stored if s in others)
    counts.unexpected = sum(1 for s in stored if s not in promised and s not in others)
    return counts


def _examples(ledger: Ledger, signal: str, stamps: list[Stamp]) -> list[str]:
    """A few stamps, named with their batch and its outcome."""
    batches = {(b.generator, b.batch): b for b in ledger.of(signal)}
    per_batch = {b.generator: b.count for b in batches.values()}  # fixed per generator
    out = []
    for gen, seq in sorted(stamps)[:EXAMPLES]:
        batch = batches.get((gen, seq // per_batch.get(gen, 1)))
        detail = f"{batch.outcome.value} after {batch.attempts} attempts" if batch else "not sent"
        out.append(f"gen {gen} seq {seq} ({detail})")
    return out
