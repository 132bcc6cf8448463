"""Schema migrations: applied once, idempotent, safe when two daemons start together."""

from __future__ import annotations

import asyncio
import datetime as dt

import asyncpg

from tidegate import schema


async def _apply_twice_concurrently(dsn: str) -> tuple[list[int], list[int], list[int]]:
    first, second = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    try:
        a, b = await asyncio.gather(schema.apply(first), schema.apply(second))
        again = await schema.apply(first)
        return a, b, again
    finally:
        await first.close()
        await second.close()


def test_migrations_apply_once_even_when_two_daemons_race(database_dsn: str) -> None:
    a, b, again = asyncio.run(_apply_twice_concurrently(database_dsn))
    versions = [m.version for m in schema.available()]
    assert sorted(a + b) == versions  # each version applied by exactly one of them
    assert again == []


async def _partitions(dsn: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        await schema.apply(conn)
        day = dt.date(2026, 11, 27)
        for _ in range(2):  # idempotent
            await conn.execute("SELECT tidegate_ensure_day($1)", day)
        rows = await conn.fetch(
            """SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
               WHERE c.relkind = 'r' ORDER BY c.relname"""
        )
        return [r["relname"] for r in rows]
    finally:
        await conn.close()


def test_ensure_day_creates_one_partition_per_partitioned_table(database_dsn: str) -> None:
    assert asyncio.run(_partitions(database_dsn)) == [
        "exp_histogram_points_20261127",
        "histogram_chunks_20261127",
        "point_chunks_20261127",
        "rollups_20261127",
        "summary_points_20261127",
        "trace_index_20261127",
    ]
