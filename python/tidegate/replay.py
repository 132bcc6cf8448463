"""At startup, the spool records the sinks had not committed go back into the cores.

Metrics replay in two passes. First, before the writer starts, the committed records that
still held data of open windows or hours (from the checkpoint's ``open_from_seq``) go back
into those windows and hours only (``MetricsCore.replay_rollups``): their raw points are
stored, their open rollups were lost with the process. Then, with the writer running (so the
core's buffer drains as the replay fills it), every record not committed is ingested again
under its own sequence number. Traces have only the second pass. Replayed requests are
remembered for deduplication, as when they were first accepted, and go back to the tenant they
were accepted for.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from tidegate._core import MetricsCore, forget_key_cache
from tidegate.checkpoints import Checkpoint
from tidegate.config import DEFAULT_TENANT
from tidegate.errors import DecodeError
from tidegate.intake import Accepted, Intake
from tidegate.spool import SpoolRecord
from tidegate.telemetry import Telemetry

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

# While the writer's queue is full, the replay waits this long before looking again.
FULL_QUEUE_PAUSE_SECONDS = 0.05


def record_tenant(record: SpoolRecord) -> str:
    """The tenant a spool record was accepted for; records written before tenants existed
    carry an empty one, which is the default tenant."""
    return record.tenant or DEFAULT_TENANT


def releasing_key_cache(work: Callable[P, R]) -> Callable[P, R]:
    """For the work of a worker thread that ingests spool records: the core's key cache this
    thread built (up to about 18 MiB) is dropped once it returns; only the decode threads keep
    theirs between requests."""

    @functools.wraps(work)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return work(*args, **kwargs)
        finally:
            forget_key_cache()

    return run


def ingest_record(core: Any, record: SpoolRecord, *, deferred: bool = False) -> Any:
    """Ingest a spool record again under its own sequence number, for its tenant. A
    ``deferred`` one (answered from the core's ``check``) meets the metrics core's series limit
    as that answer said; a replayed one was acknowledged already and never is refused."""
    tenant = record_tenant(record)
    if deferred and isinstance(core, MetricsCore):
        return core.ingest(record.payload, record.now_ns, record.seq, tenant=tenant, deferred=True)
    return core.ingest(record.payload, record.now_ns, record.seq, tenant=tenant)


@releasing_key_cache
def replay_metrics_rollups(
    core: MetricsCore, intake: Intake, checkpoint: Checkpoint, telemetry: Telemetry
) -> int:
    """Rebuild the windows and hours that were open at the last commit; returns the records
    replayed."""
    if intake.spool is None or checkpoint.open_from_seq is None:
        return 0
    replayed = 0
    for record in intake.spool.records():
        if record.seq < checkpoint.open_from_seq or record.seq not in checkpoint.committed:
            continue
        try:
            core.replay_rollups(
                record.payload,
                record.now_ns,
                record.seq,
                tenant=record_tenant(record),
                closed_at_ns=checkpoint.closed_at_ns,
                hours_closed_at_ns=checkpoint.hours_closed_at_ns,
                hours_flushed_at_ns=checkpoint.hours_flushed_at_ns,
                in_hour_flush=record.seq in checkpoint.hour_flush,
                windows_written=record.seq in checkpoint.windows_written,
                windows_written_by_hour_flush=record.seq in checkpoint.hour_flush_windows_written,
            )
        except DecodeError as exc:  # accepted once, so only a changed decoder gets here
            log.error("spool record %d no longer decodes (%s); skipped", record.seq, exc)
            continue
        replayed += 1
    telemetry.replayed_records.labels("metrics", "rollups").inc(replayed)
    if replayed:
        log.info("replayed %d stored metrics requests into their open rollups", replayed)
    return replayed


@releasing_key_cache
def replay_uncommitted(
    signal: str,
    core: Any,
    intake: Intake,
    queue_full: Callable[[], str | None],
    telemetry: Telemetry,
) -> int:
    """Ingest every record not committed, under its own sequence number; returns how many.
    ``core`` is the signal's ``MetricsCore`` or ``TraceCore``."""
    if intake.spool is None:
        return 0
    replayed = 0
    started = time.monotonic()
    for record in intake.spool.records(skip=intake.committed):
        while queue_full() is not None:
            time.sleep(FULL_QUEUE_PAUSE_SECONDS)
        try:
            summary = ingest_record(core, record)
        except DecodeError as exc:
            log.error("spool record %d no longer decodes (%s); skipped", record.seq, exc)
            continue
        intake.remember(record.seq, Accepted(record.request_hash, summary.response, record.now_ns))
        replayed += 1
    telemetry.replayed_records.labels(signal, "full").inc(replayed)
    if replayed:
        log.info(
            "replayed %d %s requests from the spool in %.1f s",
            replayed,
            signal,
            time.monotonic() - started,
        )
    return replayed


async def catch_up(
    signal: str,
    core: Any,
    intake: Intake,
    queue_full: Callable[[], str | None],
    stopping: asyncio.Event,
) -> None:
    """Ingest the deferred requests from the spool, oldest first, as the write queue makes
    room; until ``stopping`` (what is left stays in the spool for the next start)."""
    while not stopping.is_set():
        waiting = asyncio.create_task(intake.deferred_waiting.wait())
        stop = asyncio.create_task(stopping.wait())
        await asyncio.wait({waiting, stop}, return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        stop.cancel()
        while intake.deferred and not stopping.is_set():
            ingested = await asyncio.to_thread(
                _ingest_deferred, signal, core, intake, queue_full, stopping
            )
            if not ingested:
                # Deferred records not yet fsynced: the next pass finds them.
                await asyncio.sleep(FULL_QUEUE_PAUSE_SECONDS)
        if not intake.deferred:
            # On the event loop, so no request is deciding to defer meanwhile.
            intake.deferring = False
            intake.deferred_waiting.clear()


@releasing_key_cache
def _ingest_deferred(
    signal: str,
    core: Any,
    intake: Intake,
    queue_full: Callable[[], str | None],
    stopping: asyncio.Event,
) -> int:
    """One pass over the spool: ingest every deferred record found (on a worker thread)."""
    assert intake.spool is not None, "only a spool defers requests"
    ingested = 0
    for record in intake.spool.records(skip=intake.committed):
        if stopping.is_set():
            return ingested
        if record.seq not in intake.deferred:
            continue
        while queue_full() is not None:
            if stopping.is_set():
                return ingested
            time.sleep(FULL_QUEUE_PAUSE_SECONDS)
        try:
            ingest_record(core, record, deferred=True)
        except DecodeError as exc:  # it passed the same check when it was accepted
            log.error("deferred %s record %d no longer decodes (%s)", signal, record.seq, exc)
        intake.deferred.discard(record.seq)
        ingested += 1
    return ingested
