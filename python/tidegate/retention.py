"""Retention: whole UTC days older than the configured number of days are dropped, on a
schedule, by whichever daemon holds the retention lock.

- Metrics: the day partitions of every point table and of ``rollups`` (``retention.metrics_days``).
- Traces: the day partitions of ``trace_index``, the ``trace_blocks`` rows of blocks cut before
  the day, then the blocks under the day's key prefix ``blocks/YYYY/MM/DD/``
  (``retention.traces_days``). Index rows go first, so no reader is ever pointed at a deleted
  block.

The newest day kept is today; with the default ``ingest.max_past_seconds`` (30 days) no point
can arrive for a day that retention has dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import re

import asyncpg

from tidegate import timescale
from tidegate.config import Config
from tidegate.object_store import ObjectStore, ObjectStoreError
from tidegate.telemetry import Telemetry
from tidegate.write_retry import TRANSIENT_ERRORS

log = logging.getLogger(__name__)

METRIC_TABLES = (
    "point_chunks",
    "histogram_chunks",
    "exp_histogram_points",
    "summary_points",
    "rollups",
)
TRACE_TABLES = ("trace_index",)
# Serializes retention across daemons sharing a database (distinct from the migration lock).
RETENTION_LOCK_KEY = 0x7469646567617466
PARTITIONS_SQL = """
SELECT c.relname AS partition
FROM pg_inherits AS i
JOIN pg_class AS c ON c.oid = i.inhrelid
JOIN pg_class AS p ON p.oid = i.inhparent
WHERE p.relname = ANY($1::text[])
"""
DAY_SUFFIX = re.compile(r"_(\d{8})$")
DAY_PREFIX = re.compile(r"^blocks/(\d{4})/(\d{2})/(\d{2})/$")


class Retention:
    """Runs ``run_once`` every ``retention.interval_seconds`` until ``stop``."""

    def __init__(self, config: Config, dsn: str, store: ObjectStore, telemetry: Telemetry) -> None:
        self._config = config
        self._dsn = dsn
        self._store = store
        self._telemetry = telemetry
        self._stopping = asyncio.Event()
        self._woken = asyncio.Event()
        # The days in force: the static ones until a live setting changes them.
        self.metrics_days = config.retention.metrics_days
        self.traces_days = config.retention.traces_days

    def stop(self) -> None:
        self._stopping.set()
        self._woken.set()

    def set_days(self, metrics_days: int, traces_days: int) -> None:
        """New retention days (a live change); a shorter one is put into force at once."""
        if (metrics_days, traces_days) == (self.metrics_days, self.traces_days):
            return
        self.metrics_days, self.traces_days = metrics_days, traces_days
        self._woken.set()

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.run_once(dt.datetime.now(dt.UTC).date())
            except (*TRANSIENT_ERRORS, asyncpg.PostgresError, ObjectStoreError) as exc:
                self._telemetry.retention_runs.labels("failed").inc()
                log.warning("retention pass failed (%s); next try in %.0f s", exc, self._interval)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._woken.wait(), timeout=self._interval)
            self._woken.clear()

    @property
    def _interval(self) -> float:
        return self._config.retention.interval_seconds

    async def run_once(self, today: dt.date) -> None:
        """Drop every day older than the retention, as of ``today``."""
        conn = await asyncpg.connect(
            self._dsn, timeout=self._config.storage.connect_timeout_seconds
        )
        try:
            if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", RETENTION_LOCK_KEY):
                return  # another daemon is doing it
            try:
                metrics_before = today - dt.timedelta(days=self.metrics_days)
                traces_before = today - dt.timedelta(days=self.traces_days)
                await self._drop_partitions(conn, METRIC_TABLES, metrics_before, "metric_partition")
                await self._drop_partitions(conn, TRACE_TABLES, traces_before, "trace_partition")
                await timescale.drop_old_trace_chunks(conn, traces_before)
                await self._forget_blocks(conn, traces_before)
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", RETENTION_LOCK_KEY)
        finally:
            await conn.close()
        await self._delete_blocks(traces_before)
        self._telemetry.retention_runs.labels("ok").inc()

    async def _drop_partitions(
        self, conn: asyncpg.Connection, parents: tuple[str, ...], before: dt.date, kind: str
    ) -> None:
        for row in await conn.fetch(PARTITIONS_SQL, list(parents)):
            name = row["partition"]
            match = DAY_SUFFIX.search(name)
            if match is None or dt.datetime.strptime(match[1], "%Y%m%d").date() >= before:
                continue
            # The name comes from the catalog; format's %I quotes it as an identifier.
            statement = await conn.fetchval(
                "SELECT format('DROP TABLE IF EXISTS %I', $1::text)", name
            )
            await conn.execute(statement)
            self._telemetry.retention_dropped.labels(kind).inc()
            log.info("retention: dropped partition %s", name)

    async def _forget_blocks(self, conn: asyncpg.Connection, before: dt.date) -> None:
        """Delete the ``trace_blocks`` rows of the blocks about to be deleted: keys start with
        their cut day, so the day's prefix orders them."""
        result = await conn.execute(
            "DELETE FROM trace_blocks WHERE block_key < $1", f"blocks/{before:%Y/%m/%d}/"
        )
        if result != "DELETE 0":
            log.info("retention: forgot trace blocks cut before %s (%s)", before, result)

    async def _delete_blocks(self, before: dt.date) -> None:
        for year in await self._store.list_prefixes("blocks/"):
            for month in await self._store.list_prefixes(year):
                for day_prefix in await self._store.list_prefixes(month):
                    match = DAY_PREFIX.match(day_prefix)
                    if match is None:
                        continue
                    day = dt.date(int(match[1]), int(match[2]), int(match[3]))
                    if day < before:
                        deleted = await self._store.delete_prefix(day_prefix)
                        self._telemetry.retention_dropped.labels("trace_block").inc(deleted)
                        log.info("retention: deleted %d trace blocks of %s", deleted, day)
