"""Cuts trace blocks from the Rust core, stores them, then commits their index rows.

Order matters: a `tidegate_pending_blocks` row naming the block commits first, then the block
is stored (under a key derived from its bytes, so a retry rewrites the same object), then its
`trace_index` rows commit with the spool checkpoint of the requests it holds and the deletion
of the pending row. A reader never finds an index row whose block is missing, and a crash
between upload and commit leaves a pending row that the next start uses to delete the orphan
before it replays those requests. One task, one PostgreSQL connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time

import asyncpg

from tidegate import checkpoints
from tidegate._core import TraceBlock, TraceCore, TraceExportSummary
from tidegate.checkpoints import Checkpoint
from tidegate.config import Config
from tidegate.dead_letters import dead_letter
from tidegate.intake import Accepted, Intake
from tidegate.object_store import ObjectStore, ObjectStoreError
from tidegate.partitions import ensure_days
from tidegate.spool import SpoolError
from tidegate.telemetry import Telemetry
from tidegate.write_retry import (
    TRANSIENT_ERRORS,
    Backoff,
    CircuitBreaker,
    CircuitState,
    refuses_the_data,
)

log = logging.getLogger(__name__)

# How often the writer asks the core whether a block is due (size or age).
POLL_SECONDS = 0.25
# The object store's failures are retried like a lost connection.
RETRIED_ERRORS: tuple[type[BaseException], ...] = (*TRANSIENT_ERRORS, ObjectStoreError)
COMMAND_TIMEOUT_SECONDS = 120.0
SINK = "traces"


async def delete_orphan_blocks(conn: asyncpg.Connection, store: ObjectStore) -> int:
    """At startup: delete every block whose upload began but whose index never committed
    (its requests are replayed from the spool); returns how many."""
    orphans = await conn.fetch(
        """SELECT p.block_key FROM tidegate_pending_blocks AS p
           WHERE NOT EXISTS (SELECT 1 FROM trace_index AS i WHERE i.block_key = p.block_key)"""
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
        self._spool_id = spool_id
        self._breaker = CircuitBreaker(
            SINK, lambda state: telemetry.circuit_state.labels(SINK).set(state)
        )
        telemetry.circuit_state.labels(SINK).set(CircuitState.CLOSED)
        self._conn: asyncpg.Connection | None = None
        self._known_days: set[int] = set()
        self._in_flight_spans = 0
        self._stopping = asyncio.Event()
        self._stop_deadline: float | None = None

    @property
    def unwritten_spans(self) -> int:
        """Accepted spans not yet indexed: the core's queue plus the block in flight."""
        return self._core.pending_spans + self._in_flight_spans

    def account(self, summary: TraceExportSummary) -> None:
        """Counts what an Export request accepted and rejected."""
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
        try:
            await self._intake.wait_durable(block.seqs)
        except SpoolError as exc:
            # The daemon is stopping on this error: nothing unacknowledged may be stored.
            log.error("block of %d spans not written: the spool failed (%s)", block.spans, exc)
            return
        checkpoint = Checkpoint(committed=self._intake.committed_through(block.seqs))
        accepted = self._intake.accepted_in(block.seqs)
        backoff = Backoff()
        while True:
            await self._circuit_wait()
            started = time.perf_counter()
            try:
                await self._write(block, checkpoint, accepted, retrying=backoff.tried)
            except asyncpg.PostgresError as exc:
                if refuses_the_data(exc):
                    await self._dead_letter(block, checkpoint, accepted, "storage_rejected", exc)
                    return
                retry = await self._before_retry(exc, backoff)
            except RETRIED_ERRORS as exc:
                retry = await self._before_retry(exc, backoff)
            except Exception as exc:  # a bug must not kill the writer and strand the queue
                log.exception("unexpected error while writing a trace block")
                await self._reset_connection()
                await self._dead_letter(block, checkpoint, accepted, "internal_error", exc)
                return
            else:
                self._committed(block)
                tm.trace_blocks.labels("ok").inc()
                tm.trace_block_bytes.inc(len(block.data))
                tm.trace_block_duration.observe(time.perf_counter() - started)
                tm.spans_stored.inc(block.spans)
                return
            if retry is None:
                self._leave(block)
                return
            await asyncio.sleep(retry)

    async def _circuit_wait(self) -> None:
        """While the circuit is open, wait (cut short by the shutdown deadline)."""
        wait = self._breaker.wait_seconds()
        if wait and self._stop_deadline is not None:
            wait = min(wait, max(0.0, self._stop_deadline - time.monotonic()))
        if wait:
            await asyncio.sleep(wait)
            self._breaker.wait_seconds()  # moves an open circuit whose time is up to half-open

    def _committed(self, block: TraceBlock) -> None:
        self._breaker.succeeded()
        freed = self._intake.mark_committed(block.seqs)
        if freed:
            self._telemetry.spool_released_bytes.labels(SINK).inc(freed)

    async def _before_retry(self, exc: BaseException, backoff: Backoff) -> float | None:
        self._telemetry.trace_blocks.labels("retried").inc()
        self._breaker.failed()
        await self._reset_connection()
        backoff.deadline = self._stop_deadline  # set by stop() even mid-retry
        delay = backoff.next_delay()
        if delay is not None:
            log.warning("trace block write failed (%s); retrying in %.1f s", exc, delay)
        return delay

    def _leave(self, block: TraceBlock) -> None:
        """Shutdown gave up on storage: the block's requests stay in the spool for the next
        start, or, without a spool, are lost and counted."""
        if self._intake.durable:
            log.warning(
                "storage unavailable at shutdown: %d spans stay in the spool and are written "
                "at the next start",
                block.spans,
            )
            return
        self._drop(block, "storage_unavailable_at_shutdown", None)

    async def _dead_letter(
        self,
        block: TraceBlock,
        checkpoint: Checkpoint,
        accepted: list[Accepted],
        reason: str,
        exc: BaseException,
    ) -> None:
        """Storage refuses the block's index for good: its requests go to the dead-letter
        table and the checkpoint moves past them; the stored block, never indexed, goes."""
        self._drop(block, reason, exc)

        async def write(conn: asyncpg.Connection) -> None:
            await conn.execute(
                "DELETE FROM tidegate_pending_blocks WHERE block_key = $1", block.key
            )
            await self._write_checkpoint(conn, checkpoint, accepted)

        if await dead_letter(
            self._connection,
            self._intake,
            SINK,
            block.seqs,
            f"{reason}: {exc}",
            write,
            self._reset_connection,
            lambda: self._stop_deadline,
        ):
            self._telemetry.dead_letters.labels(SINK).inc()
            self._committed(block)
            with contextlib.suppress(ObjectStoreError):
                await self._store.delete_prefix(block.key)

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
        if retrying and await self._committed_before(conn, checkpoint):
            return
        if not block.traces:
            # Requests whose spans were all rejected: only their checkpoint.
            async with conn.transaction():
                await self._write_checkpoint(conn, checkpoint, accepted)
            return
        await ensure_days(conn, block.days, self._known_days)
        await conn.execute(
            "INSERT INTO tidegate_pending_blocks (block_key) VALUES ($1) ON CONFLICT DO NOTHING",
            block.key,
        )
        await self._store.put(block.key, block.data)
        async with conn.transaction():
            await conn.copy_to_table(
                "trace_index", source=io.BytesIO(block.index_copy), format="binary"
            )
            await conn.execute(
                "DELETE FROM tidegate_pending_blocks WHERE block_key = $1", block.key
            )
            await self._write_checkpoint(conn, checkpoint, accepted)

    async def _write_checkpoint(
        self, conn: asyncpg.Connection, checkpoint: Checkpoint, accepted: list[Accepted]
    ) -> None:
        """The spool position and accepted-request rows, in the caller's transaction."""
        await checkpoints.save(conn, self._spool_id, SINK, checkpoint)
        await checkpoints.record_accepted(conn, accepted)

    async def _committed_before(self, conn: asyncpg.Connection, checkpoint: Checkpoint) -> bool:
        """Whether an earlier attempt committed although its reply was lost."""
        if await checkpoints.committed(conn, self._spool_id, SINK, checkpoint):
            log.warning("an earlier attempt committed, its reply was lost: not written again")
            return True
        return False
