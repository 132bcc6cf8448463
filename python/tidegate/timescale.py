"""The TimescaleDB path: day-partitioned tables become hypertables with retention policies.

Targets the generalized hypertable API of TimescaleDB 2.13 and later (``by_range``); the
compression options and policy functions used here exist throughout 2.x (2.18 renamed them
"columnstore" and kept these names as aliases).

A declaratively partitioned table cannot become a hypertable, so each table is rebuilt: the
partitioned one is renamed away, a plain table with the same columns, defaults, constraints and
storage options takes its name (``LIKE ... INCLUDING ALL EXCLUDING INDEXES``) and becomes a
hypertable, the rows are copied, and the old table (its day partitions with it) is dropped. The
migrations' indexes and the views over these tables are saved from the catalogue first and
recreated under their own names afterwards. Once no partitioned table is left,
``tidegate_ensure_day()`` finds none in the catalogue and creates nothing.

Chunks are one UTC day (TimescaleDB aligns them on multiples of the interval since the Unix
epoch, so on UTC midnights): the same unit the daemon partitions, drops and reasons about, so
``drop_after => N days`` drops exactly the days the daemon's retention would.

Not wired into startup yet; see docs/timescaledb.md.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Literal

import asyncpg

from tidegate.config import RetentionConfig
from tidegate.schema import MIGRATION_LOCK_KEY

CHUNK_INTERVAL = "1 day"
# Compress a chunk two days after its end: the day's last windows close within minutes, and a
# day of margin keeps the few late points of ingest.max_past_seconds from landing in compressed
# chunks (which works since 2.11, but costs a decompression).
COMPRESS_AFTER_DAYS = 2
# The name the partitioned original takes while its rows are copied.
OLD_SUFFIX = "_declarative"
IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")


@dataclass(frozen=True)
class DayTable:
    """A table the migrations range-partition by UTC day, and how the Timescale path treats it."""

    name: str
    time_column: str  # the partition key in the migration
    retention: Literal["metrics", "traces"]  # which retention.*_days applies
    # Point and rollup tables are read per series over a time range: segmenting by series_id
    # keeps a series' rows together and compresses its values column-wise. trace_index is not
    # compressed: search filters it by trace id, service, time and a GIN index on attributes,
    # and compressed chunks keep none of those indexes.
    compressed: bool


DAY_TABLES = (
    DayTable("point_chunks", "start_time", "metrics", compressed=True),
    DayTable("histogram_chunks", "start_time", "metrics", compressed=True),
    DayTable("exp_histogram_points", "time", "metrics", compressed=True),
    DayTable("summary_points", "time", "metrics", compressed=True),
    DayTable("rollups", "window_start", "metrics", compressed=True),
    DayTable("trace_index", "start_time", "traces", compressed=False),
)
SEGMENT_BY = "series_id"

MARKER_TABLE_SQL = """CREATE TABLE IF NOT EXISTS tidegate_timescale (
    table_name  text PRIMARY KEY,
    applied_at  timestamptz NOT NULL DEFAULT now())"""


def _identifier(name: str) -> str:
    if not IDENTIFIER.match(name):
        raise ValueError(f"not a plain SQL identifier: {name!r}")
    return name


def _days(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be a whole number of days >= 1, got {value!r}")
    return value


def timescale_statements(
    retention: RetentionConfig, tables: tuple[DayTable, ...] = DAY_TABLES
) -> list[str]:
    """The SQL that turns ``tables`` into hypertables with retention (and compression) policies,
    in the order it must run, all in one transaction (the temporary tables drop at commit)."""
    days = {
        "metrics": _days(retention.metrics_days, "retention.metrics_days"),
        "traces": _days(retention.traces_days, "retention.traces_days"),
    }
    names = [_identifier(t.name) for t in tables]
    for table in tables:
        _identifier(table.time_column)
    regclasses = ", ".join(f"'{name}'" for name in names)
    statements = [
        "CREATE EXTENSION IF NOT EXISTS timescaledb",
        # Saved before any rename, so their text names the tables, not the renamed originals.
        "CREATE TEMPORARY TABLE tidegate_timescale_indexes ON COMMIT DROP AS "
        "SELECT x.indexrelid::regclass::text AS name, pg_get_indexdef(x.indexrelid) AS definition "
        f"FROM pg_index AS x WHERE x.indrelid = ANY (ARRAY[{regclasses}]::regclass[])",
        "CREATE TEMPORARY TABLE tidegate_timescale_views ON COMMIT DROP AS "
        "SELECT DISTINCT v.oid, v.oid::regclass::text AS name, pg_get_viewdef(v.oid) AS definition "
        "FROM pg_depend AS d JOIN pg_rewrite AS r ON r.oid = d.objid "
        "JOIN pg_class AS v ON v.oid = r.ev_class "
        "WHERE d.classid = 'pg_rewrite'::regclass AND v.relkind = 'v' "
        f"AND d.refobjid = ANY (ARRAY[{regclasses}]::regclass[])",
        # Without CASCADE: a view built on these views is not saved, so it fails the transaction
        # instead of disappearing.
        "DO $$ DECLARE v record; BEGIN "
        "FOR v IN SELECT name FROM tidegate_timescale_views ORDER BY oid DESC LOOP "
        "EXECUTE 'DROP VIEW ' || v.name; END LOOP; END $$",
    ]
    for table in tables:
        old = _identifier(table.name + OLD_SUFFIX)
        statements += [
            f"ALTER TABLE {table.name} RENAME TO {old}",
            # The partitions' toast_tuple_target (migration 0001) for the chunks, which copy the
            # hypertable's storage options.
            f"CREATE TABLE {table.name} (LIKE {old} INCLUDING ALL EXCLUDING INDEXES) "
            "WITH (toast_tuple_target = 8160)",
            # No default index on time alone: the migrations' (series_id, time) indexes are
            # recreated below, and a second btree would only slow the COPY.
            f"SELECT create_hypertable('{table.name}', "
            f"by_range('{table.time_column}', INTERVAL '{CHUNK_INTERVAL}'), "
            "create_default_indexes => false)",
            f"INSERT INTO {table.name} SELECT * FROM {old}",
            f"DROP TABLE {old}",
        ]
    statements += [
        # pg_get_indexdef says ON ONLY for a partitioned parent; on a hypertable the index must
        # reach every chunk.
        "DO $$ DECLARE i record; BEGIN "
        "FOR i IN SELECT definition FROM tidegate_timescale_indexes ORDER BY name LOOP "
        "EXECUTE replace(i.definition, ' ON ONLY ', ' ON '); END LOOP; END $$",
        "DO $$ DECLARE v record; BEGIN "
        "FOR v IN SELECT name, definition FROM tidegate_timescale_views ORDER BY oid LOOP "
        "EXECUTE 'CREATE VIEW ' || v.name || ' AS ' || v.definition; END LOOP; END $$",
    ]
    for table in tables:
        if table.compressed:
            statements += [
                f"ALTER TABLE {table.name} SET (timescaledb.compress, "
                f"timescaledb.compress_segmentby = '{SEGMENT_BY}', "
                f"timescaledb.compress_orderby = '{table.time_column} DESC')",
                f"SELECT add_compression_policy('{table.name}', "
                f"INTERVAL '{COMPRESS_AFTER_DAYS:d} days')",
            ]
        statements.append(
            f"SELECT add_retention_policy('{table.name}', "
            f"INTERVAL '{days[table.retention]:d} days')"
        )
    return statements


async def timescale_available(conn: asyncpg.Connection) -> bool:
    """Whether this server can ``CREATE EXTENSION timescaledb`` (installed, maybe not created)."""
    found = await conn.fetchval("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'")
    return found is not None


async def apply_timescale(conn: asyncpg.Connection, retention: RetentionConfig) -> list[str]:
    """Convert the day tables not yet converted, in one transaction, after the migrations; return
    the tables converted now. Each converted table is recorded in ``tidegate_timescale``, so a
    second call does nothing and a table a later migration adds is converted at the next one.
    The policies are created once: changing ``retention.*_days`` later needs
    ``remove_retention_policy`` and a new policy (docs/timescaledb.md)."""
    async with conn.transaction():
        # The migrations' lock: no daemon migrates or converts while another converts.
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
        await conn.execute(MARKER_TABLE_SQL)
        done = {
            r["table_name"] for r in await conn.fetch("SELECT table_name FROM tidegate_timescale")
        }
        pending = tuple(t for t in DAY_TABLES if t.name not in done)
        if not pending:
            return []
        for statement in timescale_statements(retention, pending):
            await conn.execute(statement)
        await conn.executemany(
            "INSERT INTO tidegate_timescale (table_name) VALUES ($1)", [(t.name,) for t in pending]
        )
    return [t.name for t in pending]


async def drop_old_trace_chunks(conn: asyncpg.Connection, before: dt.date) -> bool:
    """When ``trace_index`` is a hypertable, drop its chunks before ``before`` now, so that
    retention deletes a day's blocks only after their index rows are gone (the policy's own
    schedule could leave rows pointing at deleted blocks for a while). False when it is not a
    hypertable (plain PostgreSQL: retention drops its day partitions)."""
    hypertable = await conn.fetchval(
        "SELECT to_regclass('timescaledb_information.hypertables') IS NOT NULL"
    )
    if not hypertable or not await conn.fetchval(
        "SELECT 1 FROM timescaledb_information.hypertables WHERE hypertable_name = 'trace_index'"
    ):
        return False
    await conn.execute(
        "SELECT drop_chunks('trace_index', older_than => $1::timestamptz)",
        dt.datetime.combine(before, dt.time(), tzinfo=dt.UTC),
    )
    return True
