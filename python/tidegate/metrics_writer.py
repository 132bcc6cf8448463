"""Moves buffered points from the Rust core into PostgreSQL, one COPY batch at a time.

A single writer task owns one connection: on two cores a second COPY connection adds nothing
(docs/architecture.md). While a batch is being written the core keeps buffering the next one,
so the write queue is "what the core holds" plus "the batch in flight".

Each batch commits in one transaction with the checkpoint of the spool records it covers and
their accepted-request rows, and only once those records are fsynced in the spool: a crash
before the commit replays them, a crash after it does not.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator

import asyncpg

from tidegate import checkpoints
from tidegate._core import (
    ROLLUP_COLUMNS,
    SERIES_COLUMNS,
    CopyPayload,
    ExportSummary,
    MetricsBatch,
    MetricsCore,
)
from tidegate.checkpoints import NONE_OPEN, Checkpoint
from tidegate.config import Config
from tidegate.database import rows_affected
from tidegate.intake import Accepted, Intake
from tidegate.partitions import ensure_days
from tidegate.sink import Sink
from tidegate.telemetry import Telemetry
from tidegate.write_retry import TRANSIENT_ERRORS, Backoff, refuses_the_data

log = logging.getLogger(__name__)

# COPY target of each payload and its columns (None: every column, in table order), in the
# order they are written (series first: readers join on it).
POINT_TABLES: tuple[tuple[str, str, tuple[str, ...] | None], ...] = (
    ("point_chunks_copy", "point_chunks", None),
    ("histogram_chunks_copy", "histogram_chunks", None),
    ("exp_histogram_points_copy", "exp_histogram_points", None),
    ("summary_points_copy", "summary_points", None),
    ("rollups_copy", "rollups", ROLLUP_COLUMNS),
)
# Bounds every statement, so that a PostgreSQL that stops answering cannot hang the writer.
COMMAND_TIMEOUT_SECONDS = 120.0
# How often accepted-request rows older than the deduplication horizon are deleted.
PRUNE_EVERY_SECONDS = 60.0
# COPY data is sent in messages of this size, read straight from the core's payload.
COPY_CHUNK_BYTES = 1 << 20
SINK = "metrics"
NS_PER_SECOND = 1_000_000_000
U64_MASK = (1 << 64) - 1


def rollup_lag_seconds(
    oldest_start_ns: int | None, now_ns: int, window_seconds: int, lateness_seconds: int
) -> float:
    """How long ago the oldest open window (starting at ``oldest_start_ns``; ``None`` when no
    window is open) was due to be written: its end plus the lateness; 0 when not yet due."""
    if oldest_start_ns is None:
        return 0.0
    due_ns = oldest_start_ns + (window_seconds + lateness_seconds) * NS_PER_SECOND
    return max(0, now_ns - due_ns) / NS_PER_SECOND


async def _chunks(payload: CopyPayload) -> AsyncIterator[memoryview]:
    """``payload`` in slices of ``COPY_CHUNK_BYTES``, without copying it (asyncpg copies each
    slice into one CopyData message; a file-like source would cost a thread hand-off and a
    copy per 512 KiB read). Slices are views of the payload itself, not exports of ``view``,
    so releasing ``view`` while asyncpg still holds one is allowed."""
    with memoryview(payload) as view:
        for start in range(0, len(view), COPY_CHUNK_BYTES):
            yield view[start : start + COPY_CHUNK_BYTES]


class MetricsWriter:
    """Flushes the core every ``flush_interval_seconds`` (or sooner, under load) into PostgreSQL."""

    def __init__(
        self,
        config: Config,
        dsn: str,
        core: MetricsCore,
        telemetry: Telemetry,
        intake: Intake,
        spool_id: str,
        checkpoint: Checkpoint,
    ) -> None:
        self._config = config
        self._dsn = dsn
        self._core = core
        self._telemetry = telemetry
        self._intake = intake
        self._spool_id = spool_id
        self._checkpoint = checkpoint
        # After a shutdown cut short between its two batches, the first batch writes the
        # rebuilt hours, so that the spool need not keep the records they hold any longer.
        self._hours_flushed = -math.inf if checkpoint.shutdown_cut_short else time.monotonic()
        self._pruned = time.monotonic()
        self._conn: asyncpg.Connection | None = None
        self._known_days: set[int] = set()
        self._in_flight_points = 0
        self._collisions_seen = 0
        self._wake = asyncio.Event()
        # One batch at a time: the timer loop and an explicit drain share one connection.
        self._flush_lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._stop_deadline: float | None = None
        self._gave_up = False
        # Read at every scrape, so that it is true while a write is being retried.
        telemetry.buffered_points.set_function(lambda: self.unwritten_points)
        telemetry.rollup_lag.set_function(self._rollup_lag)
        self._sink = Sink(
            SINK,
            "PostgreSQL",
            intake,
            spool_id,
            telemetry,
            self._connection,
            self._reset_connection,
            lambda: self._stop_deadline,
        )

    @property
    def unwritten_points(self) -> int:
        """Accepted points not yet committed: the core's buffer plus the batch in flight."""
        return self._core.buffered_points + self._in_flight_points

    def account(self, summary: ExportSummary) -> None:
        """Counts what an Export request accepted and rejected, and flushes early when
        enough points are buffered."""
        tm = self._telemetry
        if summary.accepted_points:
            tm.points_accepted.inc(summary.accepted_points)
            self.poke()
        for reason, count in summary.rejected_by_reason.items():
            tm.points_rejected.labels(reason).inc(count)
        if summary.rejected_points:
            log.info("partially rejected metrics request: %s", summary.error_message)

    def queue_full(self) -> str | None:
        """Why no more points can be accepted now, or None."""
        limit = self._config.ingest.max_buffered_points
        unwritten = self.unwritten_points
        if unwritten >= limit:
            return f"write queue full ({unwritten} points not yet stored, limit {limit})"
        return None

    def poke(self) -> None:
        """Called after each accepted request: flush early once enough points are buffered."""
        if self._core.buffered_points >= self._config.ingest.flush_points:
            self._wake.set()

    async def run(self) -> None:
        """Flush on a timer until ``stop`` is called, then drain everything accepted."""
        interval = self._config.ingest.flush_interval_seconds
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=interval)
            self._wake.clear()
            await self.flush_once()
        await self.drain()

    def stop(self) -> None:
        """Drain and end ``run``; PostgreSQL gets ``shutdown_timeout_seconds`` to take it all."""
        self._stop_deadline = time.monotonic() + self._config.shutdown_timeout_seconds
        self._stopping.set()
        self._wake.set()

    async def drain(self) -> None:
        """Write batches until the core holds nothing."""
        while await self.flush_once():
            pass

    async def flush_once(self) -> bool:
        """Write one batch if anything is buffered; return whether there was one."""
        async with self._flush_lock:
            # Counted as in flight before the take: while take_batch runs, the points have left
            # the core's buffer but are not stored, and admission must still see them.
            self._in_flight_points = self._core.buffered_points
            # Once stopping, every open window is written too: a partial row now, merged by
            # readers with whatever the next daemon writes for the same window; then, in a
            # batch of their own, the open hours, so that no batch holds the rows of both
            # (at a million series that is hundreds of MiB). Every open hour is written now
            # and then, so the spool need not keep an hour of requests.
            now_ns = time.time_ns()
            flush_all = self._stopping.is_set()
            flush_hours = self._hours_due() or (flush_all and self._only_hours_open())
            batch = await asyncio.to_thread(
                self._core.take_batch, now_ns, flush_all=flush_all, flush_hours=flush_hours
            )
            if flush_hours:
                self._hours_flushed = time.monotonic()
            if batch is None:
                self._in_flight_points = 0
                self._publish_gauges()
                return False
            self._in_flight_points = batch.points
            self._publish_gauges()
            try:
                checkpoint = self._next_checkpoint(batch, now_ns, flush_all, flush_hours)
                await self._write_with_retry(batch, checkpoint)
            finally:
                self._in_flight_points = 0
                self._publish_gauges()
            return True

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    def _publish_gauges(self) -> None:
        self._telemetry.known_series.set(self._core.known_series)
        self._telemetry.open_windows.set(self._core.open_windows)
        collisions = self._core.series_collisions
        if collisions > self._collisions_seen:
            self._telemetry.series_collisions.labels("process").inc(
                collisions - self._collisions_seen
            )
            log.error("%d series id collisions in this process", collisions)
            self._collisions_seen = collisions

    def _rollup_lag(self) -> float:
        rollups = self._config.rollups
        return rollup_lag_seconds(
            self._core.oldest_open_window_start_ns,
            time.time_ns(),
            rollups.window_seconds,
            rollups.lateness_seconds,
        )

    def _hours_due(self) -> bool:
        """Whether this batch also writes every open hour: every `hour_flush_seconds`, or
        (at most once per window) sooner while the spool holds more than half its limit,
        so that the records kept for open hours do not crowd out new requests."""
        rollups = self._config.rollups
        since = time.monotonic() - self._hours_flushed
        if since >= rollups.hour_flush_seconds:
            return True
        crowded = self._intake.spool_bytes > self._config.spool.max_bytes // 2
        return crowded and since >= rollups.window_seconds

    def _only_hours_open(self) -> bool:
        """No window is open, but hours (or replayed parts of them) are."""
        core = self._core
        return core.oldest_open_window_start_ns is None and core.open_windows > 0

    def _next_checkpoint(
        self, batch: MetricsBatch, now_ns: int, flush_all: bool, flush_hours: bool
    ) -> Checkpoint:
        """The checkpoint that commits with ``batch``."""
        return self._checkpoint.after_metrics_batch(
            self._intake.committed_through(batch.seqs),
            None if batch.open_from_seq == NONE_OPEN else batch.open_from_seq,
            now_ns,
            flush_all=flush_all,
            flush_hours=flush_hours,
        )

    async def _write_with_retry(self, batch: MetricsBatch, checkpoint: Checkpoint) -> None:
        tm = self._telemetry
        sink = self._sink
        if not await sink.durable(batch.seqs):
            self._core.forget_series(batch)
            return
        accepted = self._intake.accepted_in(batch.seqs)
        backoff = Backoff()
        while True:
            if self._gave_up:
                # Shutdown already waited its time for PostgreSQL: don't wait again per batch.
                self._core.forget_series(batch)
                if not sink.leave(f"{batch.points} points"):
                    self._drop(batch, "storage_unavailable_at_shutdown", None)
                return
            await sink.circuit_wait()
            started = time.perf_counter()
            try:
                await self._write(batch, checkpoint, accepted, retrying=backoff.tried)
            except asyncpg.PostgresError as exc:
                if refuses_the_data(exc):
                    # PostgreSQL refused the data itself: retrying the same batch cannot help.
                    tm.copy_batches.labels("failed").inc()
                    await self._dead_letter(batch, checkpoint, accepted, "storage_rejected", exc)
                    return
                tm.copy_batches.labels("retried").inc()
                retry_in = await sink.before_retry(exc, backoff)
            except TRANSIENT_ERRORS as exc:
                tm.copy_batches.labels("retried").inc()
                retry_in = await sink.before_retry(exc, backoff)
            except Exception as exc:  # a bug must not kill the writer and strand the queue
                tm.copy_batches.labels("failed").inc()
                log.exception("unexpected error while writing a batch")
                await self._reset_connection()  # its state is unknown
                await self._dead_letter(batch, checkpoint, accepted, "internal_error", exc)
                return
            else:
                self._committed(batch, checkpoint)
                tm.copy_batches.labels("ok").inc()
                tm.copy_duration.observe(time.perf_counter() - started)
                tm.points_stored.inc(batch.points)
                tm.rollup_rows.labels("window").inc(batch.window_rollup_rows)
                tm.rollup_rows.labels("hour").inc(batch.hour_rollup_rows)
                return
            if retry_in is None:
                self._gave_up = True
                continue
            await asyncio.sleep(retry_in)

    def _committed(self, batch: MetricsBatch, checkpoint: Checkpoint) -> None:
        self._checkpoint = checkpoint
        # Records from `open_from_seq` on still hold data of open rollups: kept for a restart.
        self._sink.committed(batch.seqs, keep_from=checkpoint.open_from_seq)

    async def _dead_letter(
        self,
        batch: MetricsBatch,
        checkpoint: Checkpoint,
        accepted: list[Accepted],
        reason: str,
        exc: BaseException,
    ) -> None:
        """Storage refuses the batch for good: its requests go to the dead-letter table and
        the checkpoint moves past them, so the batches after it are not blocked."""
        self._drop(batch, reason, exc)
        if await self._sink.dead_letter(batch.seqs, checkpoint, accepted, f"{reason}: {exc}"):
            self._committed(batch, checkpoint)

    def _drop(self, batch: MetricsBatch, reason: str, exc: BaseException | None) -> None:
        self._core.forget_series(batch)
        self._telemetry.points_dropped.labels(reason).inc(batch.points)
        rollups = batch.window_rollup_rows + batch.hour_rollup_rows
        self._telemetry.rollup_rows_dropped.labels(reason).inc(rollups)
        log.error(
            "dropped a batch of %d points and %d rollup rows (%s): %s",
            batch.points,
            rollups,
            reason,
            exc,
        )

    async def _reset_connection(self) -> None:
        if self._conn is not None:
            self._conn.terminate()
            self._conn = None

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            self._conn = await asyncpg.connect(
                self._dsn,
                timeout=self._config.storage.connect_timeout_seconds,
                command_timeout=COMMAND_TIMEOUT_SECONDS,
            )
            await self._conn.execute(
                "CREATE TEMP TABLE IF NOT EXISTS series_incoming (LIKE series) "
                "ON COMMIT DELETE ROWS"
            )
        return self._conn

    async def _write(
        self,
        batch: MetricsBatch,
        checkpoint: Checkpoint,
        accepted: list[Accepted],
        *,
        retrying: bool,
    ) -> None:
        conn = await self._connection()
        if retrying and await self._sink.committed_before(conn, checkpoint):
            return
        await ensure_days(conn, batch.days, self._known_days)
        async with conn.transaction():
            if batch.series_copy:
                await self._write_series(conn, batch)
            for attribute, table, columns in POINT_TABLES:
                payload: CopyPayload = getattr(batch, attribute)
                if payload:
                    await conn.copy_to_table(
                        table,
                        source=_chunks(payload),
                        columns=list(columns) if columns else None,
                        format="binary",
                    )
            await self._sink.write_checkpoint(conn, checkpoint, accepted)
        if time.monotonic() - self._pruned >= PRUNE_EVERY_SECONDS:
            self._pruned = time.monotonic()
            await checkpoints.prune_accepted(conn, self._config.spool.dedup_horizon_seconds)

    async def _write_series(self, conn: asyncpg.Connection, batch: MetricsBatch) -> None:
        staged = await conn.copy_to_table(
            "series_incoming",
            source=_chunks(batch.series_copy),
            columns=list(SERIES_COLUMNS),
            format="binary",
        )
        columns = ", ".join(SERIES_COLUMNS)
        inserted = await conn.execute(
            f"INSERT INTO series ({columns}) SELECT {columns} FROM series_incoming "
            "ON CONFLICT (id) DO NOTHING"
        )
        inserted_rows = rows_affected(inserted)
        self._telemetry.new_series.inc(inserted_rows)
        if inserted_rows == rows_affected(staged):
            return  # no id was stored already, so none can name another series
        # Another process may have stored a different series under the same id.
        collided = await conn.fetch(
            """SELECT i.id, i.metric_name, s.metric_name AS stored_name, s.fingerprint
               FROM series_incoming AS i JOIN series AS s ON s.id = i.id
               WHERE s.fingerprint <> i.fingerprint"""
        )
        if collided:
            self._telemetry.series_collisions.labels("database").inc(len(collided))
            log.error(
                "series id collision with stored series: %s; this batch's points of them are "
                "stored under the stored series, later ones are rejected",
                ", ".join(
                    f"{r['metric_name']} (id {r['id']}, stored for {r['stored_name']})"
                    for r in collided[:10]
                ),
            )
            # Ids and fingerprints are stored as signed bigint: back to the core's u64.
            self._core.adopt_stored_series(
                [(r["id"] & U64_MASK, r["fingerprint"] & U64_MASK) for r in collided]
            )
