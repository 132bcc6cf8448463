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
