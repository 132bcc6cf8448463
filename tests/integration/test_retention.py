"""Retention against real PostgreSQL and a real trace store: whole days older than the
configured retention disappear (metric partitions, trace index partitions, block prefixes);
younger ones stay."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import asyncpg
import pytest

from tests.integration.moto_s3 import REGION, running_moto_server
from tidegate import schema
from tidegate.config import Config, load
from tidegate.errors import ConfigError
from tidegate.object_store import BlockNotFound, FileStore, ObjectStore, S3Store
from tidegate.retention import Retention
from tidegate.telemetry import Telemetry

TODAY = dt.date(2026, 11, 27)


def day(days_ago: int) -> dt.date:
    return TODAY - dt.timedelta(days=days_ago)


def block_key(d: dt.date, name: str) -> str:
    return f"blocks/{d:%Y/%m/%d}/13/{name}.tgb"


async def partitions(conn: asyncpg.Connection) -> set[str]:
    rows = await conn.fetch(
        "SELECT c.relname FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid"
    )
    return {r["relname"] for r in rows}


BLOCKS = [(9, "a"), (9, "b"), (8, "c"), (7, "d"), (3, "e")]
Outcome = tuple[set[str], list[str], Telemetry, list[str]]


async def scenario(dsn: str, store: ObjectStore) -> Outcome:
    """(partitions left, blocks left in the store, telemetry, blocks left in trace_blocks)."""
    conn = await asyncpg.connect(dsn)
    try:
        await schema.apply(conn)
        for ago in (40, 31, 30, 10, 8, 7, 1):
            await conn.execute("SELECT tidegate_ensure_day($1)", day(ago))
        await conn.executemany(
            "INSERT INTO trace_blocks (block_id, block_key) VALUES ($1, $2)",
            [(i, block_key(day(ago), name)) for i, (ago, name) in enumerate(BLOCKS)],
        )
    finally:
        await conn.close()
    for ago, name in BLOCKS:
        await store.put(block_key(day(ago), name), b"block " + name.encode())
    config = Config()
    config.retention.metrics_days = 30
    config.retention.traces_days = 7
    telemetry = Telemetry()
    await Retention(config, dsn, store, telemetry).run_once(TODAY)
    conn = await asyncpg.connect(dsn)
    try:
        left = await partitions(conn)
        rows = await conn.fetch("SELECT block_key FROM trace_blocks ORDER BY block_key")
    finally:
        await conn.close()
    kept = []
    for ago, name in BLOCKS:
        try:
            await store.get(block_key(day(ago), name))
            kept.append(name)
        except BlockNotFound:
            pass
    return left, kept, telemetry, [r["block_key"] for r in rows]


def test_old_days_are_dropped_from_every_table_and_the_file_store(
    database_dsn: str, tmp_path: Path
) -> None:
    async def run() -> Outcome:
        store = await FileStore.open(tmp_path / "traces")
        try:
            return await scenario(database_dsn, store)
        finally:
            await store.close()

    left, kept, telemetry, rows = asyncio.run(run())
    for table in (
        "point_chunks",
        "histogram_chunks",
        "exp_histogram_points",
        "summary_points",
        "rollups",
    ):
        assert f"{table}_{day(40):%Y%m%d}" not in left
        assert f"{table}_{day(31):%Y%m%d}" not in left
        assert f"{table}_{day(30):%Y%m%d}" in left, "the oldest kept day"
        assert f"{table}_{day(1):%Y%m%d}" in left
    for ago, present in [(40, False), (10, False), (8, False), (7, True), (1, True)]:
        assert (f"trace_index_{day(ago):%Y%m%d}" in left) is present, ago
    assert kept == ["d", "e"]
    assert rows == [block_key(day(7), "d"), block_key(day(3), "e")]
    dropped = {
        s.labels["kind"]: s.value
        for m in telemetry.retention_dropped.collect()
        for s in m.samples
        if s.name.endswith("_total")
    }
    assert dropped == {"metric_partition": 10.0, "trace_partition": 5.0, "trace_block": 3.0}


@pytest.mark.parametrize("days", [0, -1])
def test_retention_needs_at_least_one_day(days: int) -> None:
    with pytest.raises(ConfigError, match=r"retention\.traces_days"):
        load(environ={"TIDEGATE_RETENTION_TRACES_DAYS": str(days)})


def test_old_days_are_dropped_from_the_s3_store(database_dsn: str) -> None:
    import boto3

    with running_moto_server() as endpoint:
        client = boto3.client("s3", endpoint_url=endpoint, region_name=REGION)
        client.create_bucket(Bucket="retention")
        client.close()

        async def run() -> Outcome:
            store = await S3Store.open("retention", "tg", endpoint_url=endpoint)
            try:
                return await scenario(database_dsn, store)
            finally:
                await store.close()

        left, kept, _, rows = asyncio.run(run())
    assert kept == ["d", "e"]
    assert len(rows) == 2
    assert f"trace_index_{day(8):%Y%m%d}" not in left
