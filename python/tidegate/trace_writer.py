"""Cuts trace blocks from the Rust core, stores them, then commits their index rows.

Order matters: a `tidegate_pending_blocks` row naming the block commits first, then the block
is stored (under a key derived from its bytes, so a retry rewrites the same object), then its
`trace_blocks` row (key and frame dictionary) and `trace_index` rows commit with the spool
checkpoint of the requests it holds and the deletion of the pending row. A reader never finds
an index row whose block is missing, and a crash between upload and commit leaves a pending
row that the next start uses to delete the orphan before it replays those requests. One task,
one PostgreSQL connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import io
import logging
import time
from pathlib import PurePosixPath

import asyncpg

from tidegate._core import TRACE_INDEX_COLUMNS, TraceBlock, TraceCore, TraceExportSummary
from tidegate.checkpoints import Checkpoint
from tidegate.config import Config
from tidegate.errors import BlockIdCollisionError
from tidegate.intake import Accepted, Intake
from tidegate.object_store import ObjectStore, ObjectStoreError
from tidegate.partitions import EPOCH, analyze_day, ensure_days
from tidegate.sink import Sink
from tidegate.telemetry import Telemetry
from tidegate.write_retry import TRANSIENT_ERRORS, Backoff, refuses_the_data

log = logging.getLogger(__name__)

# How often the writer asks the core whether a block is due (size or age).
POLL_SECONDS = 0.25
# The object store's failures are retried like a lost connection.
RETRIED_ERRORS: tuple[type[BaseException], ...] = (*TRANSIENT_ERRORS, ObjectStoreError)
COMMAND_TIMEOUT_SECONDS = 120.0
SINK = "traces"
# A day's index partition is analyzed once this process has written this many rows to it
# (`partitions.analyze_day`); autovacuum keeps its statistics from there.
ANALYZE_AFTER_ROWS = 10_000
# The block's row, or the row already holding its id: the key it names.
BLOCK_ROW_SQL = """
WITH inserted AS (
    INSERT INTO trace_blocks (block_id, block_key, dictionary) VALUES ($1, $2, $3)
    ON CONFLICT (block_id) DO NOTHING RETURNING block_key)
SELECT block_key FROM inserted
UNION ALL SELECT block_key FROM trace_blocks WHERE block_id = $1
LIMIT 1"""


async def delete_orphan_blocks(conn: asyncpg.Connection, store: ObjectStore) -> int:
    """At startup: delete every block whose upload began but whose index never committed
    (its requests are replayed from the spool); returns how many."""
    orphans = await conn.fetch(
        """SELECT p.block_key FROM tidegate_pending_blocks AS p
           WHERE NOT EXISTS (SELECT 1 FROM trace_blocks AS b WHERE b.block_key = p.block_key)"""
    )
    for row in orphans:
        await store.delete_prefix(row["block_key"])  # the key names one object
        log.warning("deleted block %s: stored, but its index never committed", row["block_key"])
    await conn.execute("DELETE FROM tidegate_pending_blocks")
    return len(orphans)


class TraceWriter:
    """Writes a block whenever one is due, and every waiting span at shutdown."""

    def __init__(
        self,
        config: Config,
        dsn: str,
        core: TraceCore,
        store: ObjectStore,
        telemetry: Telemetry,
        intake: Intake,
        spool_id: str,
    ) -> None:
        self._config = config
        self._dsn = dsn
        self._core = core
        self._store = store
        self._telemetry = telemetry
        self._intake = intake
        self._conn: asyncpg.Connection | None = None
        self._known_days: set[int] = set()
        # Index rows written per day until its partition is analyzed (None once it is).
        self._rows_by_day: dict[int, int | None] = {}
        self._in_flight_spans = 0
        self._stopping = asyncio.Event()
        self._stop_deadline: float | None = None
        self._sink = Sink(
            SINK,
            "the trace store and PostgreSQL",
            intake,
            spool_id,
            telemetry,
            self._connection,
            self._reset_connection,
            lambda: self._stop_deadline,
        )

    @property
    def unwritten_spans(self) -> int:
        """Accepted spans not yet indexed: the core's queue plus the block in flight."""
        return self._core.pending_spans + self._in_flight_spans

    def account(self, summary: TraceExportSummary) -> None:
        """Counts what an Export request accepted, sampled out and rejected."""
        if summary.accepted_spans:
            self._telemetry.spans_accepted.inc(summary.accepted_spans)
        if summary.rejected_spans:
            self._telemetry.spans_rejected.inc(summary.rejected_spans)
            log.info("partially rejected trace request: %s", summary.error_message)

    def queue_full(self) -> str | None:
        """Why no more spans can be accepted now, or None."""
        limit = self._config.traces.max_buffered_spans
        if self.unwritten_spans >= limit:
            return f"trace queue full ({self.unwritten_spans} spans not yet stored, limit {limit})"
        return None

    async def run(self) -> None:
        """Write due blocks until ``stop``, then everything still waiting."""
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=POLL_SECONDS)
            await self.write_due(force=False)
            self._telemetry.pending_spans.set(self.unwritten_spans)
        await self.write_due(force=True)
        self._telemetry.pending_spans.set(self.unwritten_spans)

    def stop(self) -> None:
        self._stop_deadline = time.monotonic() + self._config.shutdown_timeout_seconds
        self._stopping.set()

    async def write_due(self, *, force: bool) -> int:
        """Write every block that is due (every waiting span, with ``force``), cutting the
        next block while the previous one is stored and indexed; returns the blocks written."""
        written = 0
        block = await self._take(force)
        while block is not None:
            following = asyncio.create_task(self._take(force))
            try:
                await self._write_with_retry(block)
            except BaseException:
                # Cancelled mid-write (the writer is being torn down): a block already cut
                # for the next round is counted as dropped, never lost silently.
                following.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    left = await following
                    if left is not None:
                        self._drop(left, "cancelled", None)
                raise
            finally:
                self._in_flight_spans -= block.spans
            written += 1
            block = await following
        return written

    async def _take(self, force: bool) -> TraceBlock | None:
        # Counted as in flight before the cut: while take_block runs, the spans have left the
        # core's queue but are not stored, and admission must still see them.
        waiting = self._core.pending_spans
        self._in_flight_spans += waiting
        try:
            block = await asyncio.to_thread(self._core.take_block, time.time_ns(), force=force)
        finally:
            self._in_flight_spans -= waiting
        if block is not None:
            self._in_flight_spans += block.spans
        return block

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def _write_with_retry(self, block: TraceBlock) -> None:
        tm = self._telemetry
        sink = self._sink
        if not await sink.durable(block.seqs):
            return
        checkpoint = Checkpoint(committed=self._intake.committed_through(block.seqs))
        accepted = self._intake.accepted_in(block.seqs)
        backoff = Backoff()
        while True:
            await sink.circuit_wait()
            started = time.perf_counter()
            try:
                await self._write(block, checkpoint, accepted, retrying=backoff.tried)
            except asyncpg.PostgresError as exc:
                if refuses_the_data(exc):
                    await self._dead_letter(block, checkpoint, accepted, "storage_rejected", exc)
                    return
                tm.trace_blocks.labels("retried").inc()
                retry = await sink.before_retry(exc, backoff)
            except RETRIED_ERRORS as exc:
                tm.trace_blocks.labels("retried").inc()
                retry = await sink.before_retry(exc, backoff)
            except Exception as exc:  # a bug must not kill the writer and strand the queue
                log.exception("unexpected error while writing a trace block")
                await self._reset_connection()
                await self._dead_letter(block, checkpoint, accepted, "internal_error", exc)
                return
            else:
                sink.committed(block.seqs)
                tm.trace_blocks.labels("ok").inc()
                tm.trace_block_bytes.inc(len(block.data))
                tm.trace_block_duration.observe(time.perf_counter() - started)
                tm.spans_stored.inc(block.spans)
                return
            if retry is None:
                if not sink.leave(f"{block.spans} spans"):
                    self._drop(block, "storage_unavailable_at_shutdown", None)
                return
            await asyncio.sleep(retry)

    async def _dead_letter(
        self,
        block: TraceBlock,
        checkpoint: Checkpoint,
        accepted: list[Accepted],
        reason: str,
        exc: BaseException,
    ) -> None:
        """Storage refuses the block's index for good: its requests go to the dead-letter
        table and the checkpoint moves past them; the stored block, never indexed, goes
        (unless a committed block has the same key: the same bytes, indexed before)."""
        self._drop(block, reason, exc)
        referenced = True

        async def forget_pending(conn: asyncpg.Connection) -> None:
            nonlocal referenced
            await conn.execute(
                "DELETE FROM tidegate_pending_blocks WHERE block_key = $1", block.key
            )
            # The same bytes may be a block committed before (same spans cut again).
            referenced = await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM trace_blocks WHERE block_key = $1)", block.key
            )

        if await self._sink.dead_letter(
            block.seqs, checkpoint, accepted, f"{reason}: {exc}", forget_pending
        ):
            self._sink.committed(block.seqs)
            if not referenced:
                with contextlib.suppress(ObjectStoreError):
                    await self._store.delete_prefix(block.key)

    async def _id_taken(self, conn: asyncpg.Connection, block: TraceBlock, named: str) -> None:
        """The block's id already names another key. The same content hash (file name): the
        same spans were cut again in another hour, so the row moves to this newer copy (the
        bytes are the same, and it outlives the older one under retention). Another hash:
        a 64-bit id collision, refused with an error naming both blocks."""
        if PurePosixPath(named).name != PurePosixPath(block.key).name:
            raise BlockIdCollisionError(
                f"trace block {block.key} has the id {block.id} of block {named}"
            )
        await conn.execute(
            "UPDATE trace_blocks SET block_key = $2 WHERE block_id = $1", block.id, block.key
        )
        log.info("trace block %s holds the same spans as %s, which it replaces", block.key, named)

    def _drop(self, block: TraceBlock, reason: str, exc: BaseException | None) -> None:
        self._telemetry.trace_blocks.labels("failed").inc()
        self._telemetry.spans_dropped.labels(reason).inc(block.spans)
        log.error(
            "dropped trace block %s of %d spans (%s): %s", block.key, block.spans, reason, exc
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
        return self._conn

    async def _write(
        self,
        block: TraceBlock,
        checkpoint: Checkpoint,
        accepted: list[Accepted],
        *,
        retrying: bool,
    ) -> None:
        conn = await self._connection()
        if retrying and await self._sink.committed_before(conn, checkpoint):
            return
        if not block.traces:
            # Requests whose spans were all rejected: only their checkpoint.
            async with conn.transaction():
                await self._sink.write_checkpoint(conn, checkpoint, accepted)
            return
        await ensure_days(conn, block.days, self._known_days)
        await conn.execute(
            "INSERT INTO tidegate_pending_blocks (block_key) VALUES ($1) ON CONFLICT DO NOTHING",
            block.key,
        )
        await self._store.put(block.key, block.data)
        async with conn.transaction():
            named = await conn.fetchval(BLOCK_ROW_SQL, block.id, block.key, block.dictionary)
            if named != block.key:
                await self._id_taken(conn, block, named)
            await conn.copy_to_table(
                "trace_index",
                source=io.BytesIO(block.index_copy),
                columns=TRACE_INDEX_COLUMNS,
                format="binary",
            )
            await conn.execute(
                "DELETE FROM tidegate_pending_blocks WHERE block_key = $1", block.key
            )
            await self._sink.write_checkpoint(conn, checkpoint, accepted)
        await self._analyze_filled_days(conn, block)

    async def _analyze_filled_days(self, conn: asyncpg.Connection, block: TraceBlock) -> None:
        """Analyze the partition of each day of ``block`` that has reached
        ``ANALYZE_AFTER_ROWS`` rows; a failure is logged and tried again with the next block
        (the block itself is committed)."""
        for day in block.days:
            rows = self._rows_by_day.get(day, 0)
            if rows is None:
                continue
            # The block's rows, counted for each of its days (one, but around midnight).
            rows += block.traces
            self._rows_by_day[day] = rows
            if rows < ANALYZE_AFTER_ROWS:
                continue
            try:
                await analyze_day(conn, "trace_index", day)
            except (asyncpg.PostgresError, OSError) as exc:
                date = EPOCH + dt.timedelta(day)
                log.warning("cannot analyze the trace index of %s, tried again: %s", date, exc)
            else:
                self._rows_by_day[day] = None
