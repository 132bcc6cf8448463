"""The sinks' checkpoints and accepted-request rows in PostgreSQL (``0004_spool.sql``).

A writer calls ``save`` and ``record_accepted`` inside the transaction that commits the data
they cover, so the data, the spool position and the deduplication rows commit or vanish
together.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field

import asyncpg

from tidegate.database import rows_affected
from tidegate.intake import NS_PER_SECOND, Accepted
from tidegate.spool import SeqSet

# What the core's `open_from_seq` answers when no window or hour is open.
NONE_OPEN = 2**64 - 1
I64_MIN = -(2**63)
I64_MAX = 2**63 - 1


@dataclass
class Checkpoint:
    """What one sink has committed, and what a restart needs to rebuild its open state."""

    committed: SeqSet = field(default_factory=SeqSet)
    # Metrics: the lowest record holding data of an open window or hour (None: none open).
    open_from_seq: int | None = None
    # Metrics: the flush time of the last commit (I64_MAX when it wrote every window), the
    # same for its hours (I64_MAX when it wrote every hour; shutdown writes the windows
    # first) ...
    closed_at_ns: int = I64_MIN
    hours_closed_at_ns: int = I64_MIN
    # ... and of the last commit that wrote every open hour, with the records it covered.
    hours_flushed_at_ns: int = I64_MIN
    hour_flush: SeqSet = field(default_factory=SeqSet)
    # Metrics: the records every window of which a shutdown wrote, open or not (a restart
    # can reopen those windows for older records the shutdown left in the spool; see the
    # core's ReplayFilter), and those it had written by the last hour flush.
    windows_written: SeqSet = field(default_factory=SeqSet)
    hour_flush_windows_written: SeqSet = field(default_factory=SeqSet)
    # Names the batch or block this checkpoint commits with.
    commit_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def after_metrics_batch(
        self,
        committed: SeqSet,
        open_from_seq: int | None,
        now_ns: int,
        *,
        flush_all: bool,
        flush_hours: bool,
    ) -> Checkpoint:
        """The checkpoint of a metrics batch taken at ``now_ns`` (``flush_all``: a shutdown's,
        writing every open window; ``flush_hours``: writing every open hour), after which
        ``committed`` is committed and ``open_from_seq`` the lowest record in open rollups."""
        closed_at = I64_MAX if flush_all else now_ns
        # A shutdown's batches write every window of every committed record.
        windows_written = committed.copy() if flush_all else self.windows_written
        return Checkpoint(
            committed=committed,
            open_from_seq=open_from_seq,
            closed_at_ns=closed_at,
            # Shutdown's batch of windows writes only the hours closed by now.
            hours_closed_at_ns=now_ns if flush_all and not flush_hours else closed_at,
            hours_flushed_at_ns=closed_at if flush_hours else self.hours_flushed_at_ns,
            hour_flush=committed.copy() if flush_hours else self.hour_flush,
            windows_written=windows_written,
            hour_flush_windows_written=(
                windows_written.copy() if flush_hours else self.hour_flush_windows_written
            ),
        )

    @property
    def shutdown_cut_short(self) -> bool:
        """A shutdown stopped between its two batches: every window is written, and the
        hours that were open are not (a restart rebuilds them from the spool)."""
        return self.closed_at_ns == I64_MAX and self.hours_closed_at_ns != I64_MAX


async def load(conn: asyncpg.Connection, spool_id: str, sink: str) -> Checkpoint:
    """The sink's checkpoint for this spool (an empty one when it never committed)."""
    row = await conn.fetchrow(
        """SELECT committed_floor, committed_extras, open_from_seq, closed_at_ns,
                  hours_closed_at_ns, hours_flushed_at_ns, hour_flush_floor, hour_flush_extras,
                  windows_written_floor, windows_written_extras,
                  hour_flush_windows_written_floor, hour_flush_windows_written_extras
           FROM tidegate_checkpoints WHERE spool_id = $1 AND sink = $2""",
        spool_id,
        sink,
    )
    if row is None:
        return Checkpoint()
    closed_at_ns = _or(row["closed_at_ns"], I64_MIN)
    committed = SeqSet(row["committed_floor"], row["committed_extras"])
    hour_flush = SeqSet(_or(row["hour_flush_floor"], 0), row["hour_flush_extras"] or ())
    hours_flushed_at_ns = _or(row["hours_flushed_at_ns"], I64_MIN)
    if row["windows_written_floor"] is None:
        # Written before the sets were kept: what a shutdown's checkpoint implies (exact
        # when that version stopped cleanly; other checkpoints of it imply nothing).
        windows_written = committed.copy() if closed_at_ns == I64_MAX else SeqSet()
        by_hour_flush = hour_flush.copy() if hours_flushed_at_ns == I64_MAX else SeqSet()
    else:
        windows_written = SeqSet(row["windows_written_floor"], row["windows_written_extras"])
        by_hour_flush = SeqSet(
            row["hour_flush_windows_written_floor"], row["hour_flush_windows_written_extras"]
        )
    return Checkpoint(
        committed=committed,
        open_from_seq=row["open_from_seq"],
        closed_at_ns=closed_at_ns,
        # They differ only between a shutdown's two batches; NULL: written by a version that
        # closed both at once.
        hours_closed_at_ns=(
            _or(row["hours_closed_at_ns"], closed_at_ns)
            if closed_at_ns == I64_MAX
            else closed_at_ns
        ),
        hours_flushed_at_ns=hours_flushed_at_ns,
        hour_flush=hour_flush,
        windows_written=windows_written,
        hour_flush_windows_written=by_hour_flush,
    )


async def save(conn: asyncpg.Connection, spool_id: str, sink: str, cp: Checkpoint) -> None:
    """Upsert the checkpoint; call inside the transaction of the data it covers."""
    await conn.execute(
        """INSERT INTO tidegate_checkpoints AS c
               (spool_id, sink, committed_floor, committed_extras, open_from_seq,
                closed_at_ns, hours_closed_at_ns, hours_flushed_at_ns, hour_flush_floor,
                hour_flush_extras, windows_written_floor, windows_written_extras,
                hour_flush_windows_written_floor, hour_flush_windows_written_extras, commit_id)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
           ON CONFLICT (spool_id, sink) DO UPDATE SET
               committed_floor = excluded.committed_floor,
               committed_extras = excluded.committed_extras,
               open_from_seq = excluded.open_from_seq,
               closed_at_ns = excluded.closed_at_ns,
               hours_closed_at_ns = excluded.hours_closed_at_ns,
               hours_flushed_at_ns = excluded.hours_flushed_at_ns,
               hour_flush_floor = excluded.hour_flush_floor,
               hour_flush_extras = excluded.hour_flush_extras,
               windows_written_floor = excluded.windows_written_floor,
               windows_written_extras = excluded.windows_written_extras,
               hour_flush_windows_written_floor = excluded.hour_flush_windows_written_floor,
               hour_flush_windows_written_extras = excluded.hour_flush_windows_written_extras,
               commit_id = excluded.commit_id,
               updated_at = now()""",
        spool_id,
        sink,
        cp.committed.floor,
        list(cp.committed.extras),
        cp.open_from_seq,
        cp.closed_at_ns,
        cp.hours_closed_at_ns,
        cp.hours_flushed_at_ns,
        cp.hour_flush.floor,
        list(cp.hour_flush.extras),
        cp.windows_written.floor,
        list(cp.windows_written.extras),
        cp.hour_flush_windows_written.floor,
        list(cp.hour_flush_windows_written.extras),
        cp.commit_id,
    )


async def committed(conn: asyncpg.Connection, spool_id: str, sink: str, cp: Checkpoint) -> bool:
    """Whether ``cp`` is the sink's last commit: after a failure that may have come after
    COMMIT, the data it covers is stored and must not be written again."""
    found = await conn.fetchval(
        "SELECT commit_id FROM tidegate_checkpoints WHERE spool_id = $1 AND sink = $2",
        spool_id,
        sink,
    )
    return bool(found == cp.commit_id)


async def record_accepted(conn: asyncpg.Connection, accepted: list[Accepted]) -> None:
    """Add the accepted requests' rows; call inside the transaction of their data."""
    if accepted:
        await conn.copy_records_to_table(
            "tidegate_accepted_requests",
            records=[(a.request_hash, a.response, _timestamp(a.now_ns)) for a in accepted],
            columns=["request_hash", "response", "accepted_at"],
        )


async def load_accepted(conn: asyncpg.Connection, horizon_seconds: float) -> list[Accepted]:
    """The accepted requests within the horizon, oldest first."""
    rows = await conn.fetch(
        """SELECT request_hash, response,
                  (extract(epoch FROM accepted_at) * 1e6)::bigint AS micros
           FROM tidegate_accepted_requests
           WHERE accepted_at > now() - make_interval(secs => $1)
           ORDER BY accepted_at""",
        horizon_seconds,
    )
    return [
        Accepted(bytes(r["request_hash"]), bytes(r["response"]), r["micros"] * 1000) for r in rows
    ]


async def prune_accepted(conn: asyncpg.Connection, horizon_seconds: float) -> int:
    """Delete accepted-request rows older than the horizon; returns how many."""
    status = await conn.execute(
        "DELETE FROM tidegate_accepted_requests "
        "WHERE accepted_at <= now() - make_interval(secs => $1)",
        horizon_seconds,
    )
    return rows_affected(status)


def _timestamp(now_ns: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(now_ns / NS_PER_SECOND, tz=dt.UTC)


def _or(value: int | None, default: int) -> int:
    return default if value is None else value
