"""What a target stored, for ``e2e``: points counted, and the bytes its tables hold on disk.

Bytes: ``pg_total_relation_size`` (heap, TOAST and indexes) summed over each named table and every
relation that inherits from it (``pg_inherits``, recursively), so day partitions, and TimescaleDB
chunks, are counted; a partitioned parent holds nothing itself. Tables not created yet count 0.
"""

from __future__ import annotations

import asyncio

import asyncpg

TIDEGATE_COUNT = (
    "SELECT (SELECT coalesce(sum(point_count), 0) FROM point_chunks)"
    " + (SELECT count(*) FROM histogram_points) + (SELECT count(*) FROM exp_histogram_points)"
    " + (SELECT count(*) FROM summary_points)"
)
BASELINE_COUNT = "SELECT count(*) FROM baseline_points"
# Every table tidegate writes metrics into, with the series catalogue and the rollups.
TIDEGATE_TABLES = (
    "point_chunks",
    "histogram_chunks",
    "exp_histogram_points",
    "summary_points",
    "rollups",
    "series",
)
BASELINE_TABLES = ("baseline_points",)
TABLES_BYTES_SQL = """
WITH RECURSIVE tree (relid) AS (
    SELECT to_regclass(name)::oid FROM unnest($1::text[]) AS name
    WHERE to_regclass(name) IS NOT NULL
    UNION
    SELECT i.inhrelid FROM pg_inherits AS i JOIN tree AS t ON i.inhparent = t.relid
)
SELECT coalesce(sum(pg_total_relation_size(relid)), 0) FROM tree
"""


async def _count(dsn: str, sql: str) -> int:
    connection = await asyncpg.connect(dsn)
    try:
        return int(await connection.fetchval(sql))
    except asyncpg.UndefinedTableError:
        return 0  # the target has not created its tables yet: nothing stored
    finally:
        await connection.close()


def count_points(dsn: str, sql: str) -> int:
    """Run a count query against ``dsn``."""
    return asyncio.run(_count(dsn, sql))


async def _tables_bytes(dsn: str, tables: tuple[str, ...]) -> int:
    connection = await asyncpg.connect(dsn)
    try:
        return int(await connection.fetchval(TABLES_BYTES_SQL, list(tables)))
    finally:
        await connection.close()


def tables_bytes(dsn: str, tables: tuple[str, ...]) -> int:
    """Table plus index bytes of ``tables`` and all their partitions in ``dsn``."""
    return asyncio.run(_tables_bytes(dsn, tables)) if tables else 0
