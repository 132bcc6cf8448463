"""The TimescaleDB path. No TimescaleDB package exists for the machines CI runs on, so these
tests check the statements it would run, and run the parts of them plain PostgreSQL can run
(the table swap, indexes and views) against the real server, rolled back."""

from __future__ import annotations

import asyncio
import datetime as dt
import re

import asyncpg
import pytest

from tidegate import retention, schema
from tidegate.config import RetentionConfig
from tidegate.timescale import (
    DAY_TABLES,
    DayTable,
    apply_timescale,
    timescale_available,
    timescale_statements,
)

# A CREATE TABLE whose body reaches its PARTITION BY RANGE without crossing another CREATE TABLE.
PARTITIONED = re.compile(
    r"CREATE TABLE (\w+) \((?:(?!CREATE TABLE).)*?\) PARTITION BY RANGE \((\w+)\)", re.S
)
# What needs the extension; everything else must run on plain PostgreSQL.
NEEDS_TIMESCALE = re.compile(r"timescaledb|create_hypertable|add_\w+_policy")


def migrated_day_tables() -> dict[str, str]:
    """Every table the migrations range-partition, with its partition key."""
    return {
        name: column
        for migration in schema.available()
        for name, column in PARTITIONED.findall(migration.sql)
    }


def test_every_day_partitioned_table_of_the_migrations_is_covered() -> None:
    found = migrated_day_tables()
    assert len(found) >= 6  # the regular expression still finds the tables it was written for
    assert {t.name: t.time_column for t in DAY_TABLES} == found


def test_retention_classes_agree_with_the_daemons_retention() -> None:
    assert {t.name for t in DAY_TABLES if t.retention == "metrics"} == set(retention.METRIC_TABLES)
    assert {t.name for t in DAY_TABLES if t.retention == "traces"} == set(retention.TRACE_TABLES)


def test_extension_first_then_each_table_rebuilt_before_its_policies() -> None:
    statements = timescale_statements(RetentionConfig())
    assert statements[0] == "CREATE EXTENSION IF NOT EXISTS timescaledb"
    assert sum("EXTENSION" in s for s in statements) == 1
    for table in DAY_TABLES:
        rename = statements.index(f"ALTER TABLE {table.name} RENAME TO {table.name}_declarative")
        hypertable = statements.index(
            f"SELECT create_hypertable('{table.name}', "
            f"by_range('{table.time_column}', INTERVAL '1 day'), create_default_indexes => false)"
        )
        copy = statements.index(f"INSERT INTO {table.name} SELECT * FROM {table.name}_declarative")
        drop = statements.index(f"DROP TABLE {table.name}_declarative")
        policy = next(i for i, s in enumerate(statements) if f"_policy('{table.name}'" in s)
        assert 0 < rename < hypertable < copy < drop < policy


@pytest.mark.parametrize(("metrics_days", "traces_days"), [(30, 7), (1, 400)])
def test_retention_intervals_come_from_the_config(metrics_days: int, traces_days: int) -> None:
    config = RetentionConfig(metrics_days=metrics_days, traces_days=traces_days)
    policies = [s for s in timescale_statements(config) if "add_retention_policy" in s]
    assert policies == [
        f"SELECT add_retention_policy('{t.name}', INTERVAL "
        f"'{metrics_days if t.retention == 'metrics' else traces_days} days')"
        for t in DAY_TABLES
    ]


def test_compression_on_point_and_rollup_tables_only() -> None:
    statements = timescale_statements(RetentionConfig())
    for table in DAY_TABLES:
        settings = f"ALTER TABLE {table.name} SET (timescaledb.compress, "
        policy = f"SELECT add_compression_policy('{table.name}', INTERVAL '2 days')"
        expected = table.name != "trace_index"
        assert table.compressed == expected
        assert (policy in statements) == expected
        assert any(s.startswith(settings) for s in statements) == expected
        if expected:
            assert (
                f"{settings}timescaledb.compress_segmentby = 'series_id', "
                f"timescaledb.compress_orderby = '{table.time_column} DESC')"
            ) in statements


@pytest.mark.parametrize(
    ("metrics_days", "traces_days"),
    [(0, 7), (30, -1), (True, 7), ("30; DROP TABLE series", 7), (30, 7.5)],
)
def test_retention_days_must_be_whole_positive_ints(
    metrics_days: object, traces_days: object
) -> None:
    config = RetentionConfig(metrics_days=metrics_days, traces_days=traces_days)
    with pytest.raises(ValueError, match="whole number of days"):
        timescale_statements(config)


def test_identifiers_are_checked() -> None:
    bad = DayTable("rollups; DROP TABLE series", "window_start", "metrics", compressed=True)
    with pytest.raises(ValueError, match="not a plain SQL identifier"):
        timescale_statements(RetentionConfig(), (bad,))


async def _catalogue(conn: asyncpg.Connection) -> list[tuple[str, str]]:
    rows = await conn.fetch(
        """SELECT c.relname, c.relkind::text FROM pg_class AS c
           WHERE c.relnamespace = current_schema()::regnamespace ORDER BY 1"""
    )
    return [(r[0], r[1]) for r in rows] + [
        ("extension", r[0]) for r in await conn.fetch("SELECT extname FROM pg_extension")
    ]


async def _without_timescale(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await schema.apply(conn)
        before = await _catalogue(conn)
        assert not await timescale_available(conn), "this server has TimescaleDB installed"
        assert await _catalogue(conn) == before
        assert "tidegate_timescale" not in {name for name, _ in before}
    finally:
        await conn.close()


def test_plain_postgresql_has_no_timescale_and_is_left_alone(database_dsn: str) -> None:
    asyncio.run(_without_timescale(database_dsn))


INDEXES_SQL = """SELECT c.relname AS table, i.relname AS index,
       replace(pg_get_indexdef(x.indexrelid), ' ON ONLY ', ' ON ') AS definition
FROM pg_index AS x
JOIN pg_class AS i ON i.oid = x.indexrelid
JOIN pg_class AS c ON c.oid = x.indrelid
WHERE c.relname = ANY ($1::text[]) ORDER BY 2"""
COLUMNS_SQL = """SELECT table_name, column_name, data_type, is_nullable
FROM information_schema.columns WHERE table_name = ANY ($1::text[])
ORDER BY table_name, ordinal_position"""
VIEWS_SQL = """SELECT viewname, definition FROM pg_views
WHERE schemaname = current_schema() ORDER BY viewname"""


async def _swap_on_plain_postgresql(dsn: str) -> None:
    names = [t.name for t in DAY_TABLES]
    conn = await asyncpg.connect(dsn)
    try:
        await schema.apply(conn)
        day = dt.date(2026, 11, 27)
        await conn.execute("SELECT tidegate_ensure_day($1)", day)
        await conn.execute(
            """INSERT INTO point_chunks VALUES (1, '2026-11-27 10:00Z', '2026-11-27 10:01Z', 2,
                   '{2026-11-27 10:00Z, 2026-11-27 10:01Z}', '{1.5, 2.5}', NULL)"""
        )
        indexes, columns = (
            await conn.fetch(INDEXES_SQL, names),
            await conn.fetch(COLUMNS_SQL, names),
        )
        views = await conn.fetch(VIEWS_SQL)
        transaction = conn.transaction()
        await transaction.start()
        try:
            for statement in timescale_statements(RetentionConfig()):
                if not NEEDS_TIMESCALE.search(statement):
                    await conn.execute(statement)
            assert await conn.fetch(INDEXES_SQL, names) == indexes
            assert await conn.fetch(COLUMNS_SQL, names) == columns
            assert await conn.fetch(VIEWS_SQL) == views
            assert not await conn.fetchval("SELECT count(*) FROM pg_partitioned_table")
            await conn.execute("SELECT tidegate_ensure_day($1)", day)  # finds nothing to create
            assert await conn.fetchval("SELECT count(*) FROM pg_inherits") == 0
            assert await conn.fetchval("SELECT array_agg(value) FROM metric_points") == [1.5, 2.5]
            options = await conn.fetchval(
                "SELECT reloptions FROM pg_class WHERE relname = 'point_chunks'"
            )
            assert options == ["toast_tuple_target=8160"]
        finally:
            await transaction.rollback()
        assert await conn.fetchval("SELECT count(*) FROM pg_partitioned_table") == len(names)
    finally:
        await conn.close()


def test_table_swap_keeps_columns_indexes_views_and_rows(database_dsn: str) -> None:
    """Everything but the extension's own calls, on the real server, then rolled back."""
    asyncio.run(_swap_on_plain_postgresql(database_dsn))


async def _apply_without_extension(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await schema.apply(conn)
        with pytest.raises(asyncpg.PostgresError, match="timescaledb"):
            await apply_timescale(conn, RetentionConfig())
        # One transaction: nothing of it stays, not even its marker table.
        assert await conn.fetchval("SELECT to_regclass('tidegate_timescale')") is None
        assert await conn.fetchval("SELECT count(*) FROM pg_partitioned_table") == len(DAY_TABLES)
    finally:
        await conn.close()


def test_apply_without_the_extension_fails_and_changes_nothing(database_dsn: str) -> None:
    asyncio.run(_apply_without_extension(database_dsn))
