"""Day partitions: created before the first write that needs them."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable

import asyncpg

EPOCH = dt.date(1970, 1, 1)


async def ensure_days(conn: asyncpg.Connection, days: Iterable[int], known: set[int]) -> None:
    """Create the partitions of ``days`` (days since 1970-01-01) not in ``known``, and of
    tomorrow: creating a partition locks its parent table, better done early than by the
    first row of a new day."""
    tomorrow = int(time.time() // 86400) + 1
    for day in sorted({*days, tomorrow}):
        if day not in known:
            await conn.execute("SELECT tidegate_ensure_day($1)", EPOCH + dt.timedelta(day))
            known.add(day)


async def analyze_day(conn: asyncpg.Connection, parent: str, day: int) -> None:
    """Gather the planner statistics of ``parent``'s partition of ``day`` now instead of when
    autovacuum first gets to it (a minute or more): without them the planner takes a day's
    partition filled since midnight for nearly empty, and a search of its newest rows for a
    sort of every row in the window (hundreds of ms instead of a few)."""
    name = f"{parent}_{EPOCH + dt.timedelta(day):%Y%m%d}"
    await conn.execute(f'ANALYZE "{name}"')
