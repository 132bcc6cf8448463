"""Trace search reads the newest index rows first and stops early, yet answers exactly what
one query over the whole window answers: traces whose rows sit in several blocks (an older
row holding the root, a duration only the rows together reach), start times shared by many
traces, filters that match nothing (the whole window is aggregated after the pages), and
another tenant's rows, over 30,000 index rows in a real PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from typing import Any

import asyncpg
import pytest

from tidegate import schema, traces
from tidegate._core import attribute_hash
from tidegate.partitions import EPOCH, analyze_day
from tidegate.traces import PAGED_ROWS, SEARCH_SQL, STATUSES, TraceMatch, search

START = dt.datetime(2026, 11, 27, 10, 0, tzinfo=dt.UTC)
ROWS = 30_000
MS = dt.timedelta(milliseconds=1)
RELTUPLES_SQL = "SELECT reltuples FROM pg_class WHERE relname = $1"
ROUTE = "http.route=/pay"

# One row per trace i: every third start shared with its neighbours, 1-9 ms long; service
# checkout or cart; status error on every 50th; the route attribute on every 7th.
FILL_SQL = """
INSERT INTO trace_index (trace_id, block_id, frame_offset, frame_length, start_time, end_time,
                         service, root_name, status, span_count, attributes, tenant)
SELECT decode(lpad(to_hex(i), 32, '0'), 'hex'), 1, 0, 10,
       $1::timestamptz + (i / 3) * interval '1 ms',
       $1::timestamptz + (i / 3) * interval '1 ms' + (1 + i % 9) * interval '1 ms',
       CASE WHEN i % 2 = 0 THEN 'checkout' ELSE 'cart' END,
       CASE WHEN i % 2 = 0 THEN 'POST /pay' ELSE 'GET /cart' END,
       CASE WHEN i % 50 = 0 THEN 2 WHEN i % 5 = 0 THEN 1 ELSE 0 END,
       4,
       CASE WHEN i % 7 = 0 THEN ARRAY[$2::integer] ELSE ARRAY[]::integer[] END,
       'default'
FROM generate_series(1, $3) AS i
"""
# A trace in two blocks: its root, early in the window, and a later part, newest of all;
# together 30 s long, each row alone under 10 ms. Another tenant's newest trace. And the
# oldest trace, 5 s long: only the whole-window query reaches it.
SPLIT = bytes.fromhex("ff" * 16)
SLOW = bytes.fromhex("ee" * 16)
EXTRA_SQL = """
INSERT INTO trace_index (trace_id, block_id, frame_offset, frame_length, start_time, end_time,
                         service, root_name, status, span_count, attributes, tenant)
SELECT id, block, 0, 10, t, t + ms * interval '1 ms', 'checkout', root, status, spans, '{}', tenant
FROM (VALUES ($1::bytea, 2, $2::timestamptz, 5, 'POST /split', 0, 3, 'default'),
             ($1, 3, $3::timestamptz, 5, NULL, 2, 5, 'default'),
             ($4, 3, $3, 9, 'POST /pay', 2, 1, 'other'),
             ($5, 4, $6::timestamptz, 5000, 'GET /slow', 0, 1, 'default'))
     AS r(id, block, t, ms, root, status, spans, tenant)
"""


async def _reference(conn: asyncpg.Connection, **kw: object) -> list[str]:
    """The trace ids one query over the whole window gives (what search must equal)."""

    def ns(d: object) -> int | None:
        return None if d is None else int(d / dt.timedelta(microseconds=1)) * 1000  # type: ignore[operator]

    rows = await conn.fetch(
        SEARCH_SQL,
        kw.get("start", START),
        kw.get("end", START + dt.timedelta(hours=1)),
        kw.get("service"),
        None if kw.get("attribute") is None else attribute_hash(str(kw["attribute"])),
        kw.get("name"),
        ns(kw.get("min_duration")),
        ns(kw.get("max_duration")),
        None if kw.get("status") is None else STATUSES[str(kw["status"])],
        kw.get("tenant", "default"),
        kw.get("limit", 20),
    )
    return [r["trace_id"].hex() for r in rows]


async def _scenario(dsn: str) -> dict[str, list[TraceMatch]]:
    conn = await asyncpg.connect(dsn)
    try:
        await schema.apply(conn)
        await conn.execute("SELECT tidegate_ensure_day($1)", START.date())
        await conn.execute(FILL_SQL, START, attribute_hash(ROUTE), ROWS)
        late = START + (ROWS // 3 + 10) * MS
        await conn.execute(
            EXTRA_SQL, SPLIT, START + 30 * MS, late + 30_000 * MS, SPLIT[::-1], SLOW, START
        )
        day = (START.date() - EPOCH).days
        before = await conn.fetchval(RELTUPLES_SQL, f"trace_index_{START:%Y%m%d}")
        await analyze_day(conn, "trace_index", day)
        after = await conn.fetchval(RELTUPLES_SQL, f"trace_index_{START:%Y%m%d}")
        assert (before, after) == (-1, ROWS + 4), "a partition never analyzed, then analyzed"
        window = {"start": START, "end": START + dt.timedelta(hours=1)}
        cases: dict[str, dict[str, object]] = {
            "newest": {},
            "limit 100": {"limit": 100},
            "checkout": {"service": "checkout"},
            "error": {"status": "error"},
            "ok": {"status": "ok"},
            "route": {"attribute": ROUTE},
            "root name": {"name": "GET /cart"},
            "split root": {"name": "POST /split"},
            "at least 8 ms": {"min_duration": 8 * MS},
            "at least 1 s": {"min_duration": dt.timedelta(seconds=1)},
            "at least 2 s, slow root": {
                "min_duration": 2 * dt.timedelta(seconds=1),
                "name": "GET /slow",
            },
            "at least 1 h": {"min_duration": dt.timedelta(hours=1)},
            "at most 2 ms, old window": {
                "max_duration": 2 * MS,
                "start": START + 100 * MS,
                "end": START + 200 * MS,
                "limit": 1000,
            },
            "other tenant": {"tenant": "other"},
        }
        results = {}
        for label, kw in cases.items():
            found = await search(conn, **{**window, **kw})  # type: ignore[arg-type]
            assert [m.trace_id for m in found] == await _reference(conn, **kw), label
            results[label] = found
        return results
    finally:
        await conn.close()


def test_search_pages_give_what_the_whole_window_gives(database_dsn: str) -> None:
    results = asyncio.run(_scenario(database_dsn))
    assert ROWS > PAGED_ROWS, "the scenario reaches the whole-window query"
    newest = results["newest"]
    # Traces rank by their start: the split trace's newest row comes first in the pages,
    # but it started early, so the last filled trace leads.
    assert newest[0].trace_id == f"{ROWS:032x}"
    assert SPLIT.hex() not in {m.trace_id for m in newest}
    (split,) = results["split root"]
    assert split.trace_id == SPLIT.hex()
    # Both rows: the root from the older one, spans and the worst status from both.
    assert (split.root_name, split.span_count, split.status) == ("POST /split", 8, "error")
    assert split.duration_ns == (ROWS // 3 + 10 + 30_000 + 5 - 30) * 1_000_000
    assert len(newest) == 20
    assert len(results["limit 100"]) == 100
    # Shared start times come newest first, then by trace id, the same way every time.
    starts = [(m.start, m.trace_id) for m in results["limit 100"]]
    assert starts == sorted(starts, reverse=True)
    assert {m.service for m in results["checkout"]} == {"checkout"}
    assert {m.status for m in results["error"]} == {"error"}
    assert {m.status for m in results["ok"]} == {"ok"}
    assert [m.trace_id for m in results["at least 1 s"]] == [SPLIT.hex(), SLOW.hex()]
    assert [m.trace_id for m in results["at least 2 s, slow root"]] == [SLOW.hex()]
    assert results["at least 1 h"] == []
    assert all(m.duration_ns >= 8_000_000 for m in results["at least 8 ms"])
    assert 0 < len(results["at most 2 ms, old window"]) < 1000
    assert [m.trace_id for m in results["other tenant"]] == [SPLIT[::-1].hex()]


# What every search answered before it read pages: one query over the window (ties by id).
WHOLE_WINDOW_SQL = """
SELECT trace_id, min(start_time) AS start, max(end_time) AS end_time,
       sum(span_count)::bigint AS span_count, max(status) AS status,
       (array_agg(service ORDER BY root_name IS NULL, start_time))[1] AS service,
       (array_agg(root_name ORDER BY root_name IS NULL, start_time))[1] AS root_name
FROM trace_index
WHERE tenant = $10 AND start_time >= $1 AND start_time < $2
  AND ($3::text IS NULL OR service = $3)
  AND ($4::integer IS NULL OR attributes @> ARRAY[$4::integer])
GROUP BY trace_id
HAVING ($5::text IS NULL OR bool_or(root_name = $5))
   AND ($6::bigint IS NULL OR extract(epoch FROM max(end_time) - min(start_time)) * 1e9 >= $6)
   AND ($7::bigint IS NULL OR extract(epoch FROM max(end_time) - min(start_time)) * 1e9 <= $7)
   AND ($8::int IS NULL OR max(status) = $8)
ORDER BY min(start_time) DESC, trace_id DESC
LIMIT $9
"""
ROW_SQL = """
INSERT INTO trace_index (trace_id, block_id, frame_offset, frame_length, start_time, end_time,
                         service, root_name, status, span_count, attributes, tenant)
VALUES ($1, $2, 0, 10, $3, $4, $5, $6, $7, $8, $9, 'default')
"""


async def _random_scenario(dsn: str, rng: random.Random) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        await schema.apply(conn)
        await conn.execute("SELECT tidegate_ensure_day($1)", START.date())
        names, hashes = ["GET /a", "GET /b", "POST /c"], [attribute_hash(ROUTE), 7]
        rows = []
        for t in range(400):
            trace_id = t.to_bytes(16, "big")
            # 1-3 rows (blocks); start times on a coarse grid, so many are shared.
            for part in range(rng.choice((1, 1, 2, 3))):
                begin = START + rng.randrange(0, 200) * 5 * MS
                rows.append(
                    (
                        trace_id,
                        part,
                        begin,
                        begin + rng.randrange(0, 40) * MS,
                        rng.choice(("checkout", "cart")),
                        rng.choice(names) if part == 0 else rng.choice((None, None, "GET /a")),
                        rng.choice((0, 0, 1, 2)),
                        rng.randrange(1, 9),
                        [h for h in hashes if rng.random() < 0.3],
                    )
                )
        await conn.executemany(ROW_SQL, rows)
        checked = 0
        for _ in range(150):
            lo = START + rng.randrange(0, 150) * 5 * MS
            kw: dict[str, Any] = {
                "start": lo,
                "end": lo + rng.randrange(1, 250) * 5 * MS,
                "limit": rng.choice((1, 3, 10, 30)),
                "service": rng.choice((None, None, "cart")),
                "name": rng.choice((None, None, "GET /a", "POST /c")),
                "status": rng.choice((None, None, "ok", "error", "unset")),
                "attribute": rng.choice((None, None, ROUTE)),
                "min_duration": rng.choice((None, None, 20 * MS, 300 * MS)),
                "max_duration": rng.choice((None, None, 30 * MS)),
            }
            expected = await conn.fetch(
                WHOLE_WINDOW_SQL,
                kw["start"],
                kw["end"],
                kw["service"],
                None if kw["attribute"] is None else attribute_hash(kw["attribute"]),
                kw["name"],
                None if kw["min_duration"] is None else kw["min_duration"] // MS * 1_000_000,
                None if kw["max_duration"] is None else kw["max_duration"] // MS * 1_000_000,
                None if kw["status"] is None else STATUSES[kw["status"]],
                kw["limit"],
                "default",
            )
            found = await search(conn, **kw)
            want = [
                TraceMatch(
                    trace_id=r["trace_id"].hex(),
                    start=r["start"],
                    duration_ns=(r["end_time"] - r["start"]) // MS * 1_000_000,
                    span_count=r["span_count"],
                    status={0: "unset", 1: "ok", 2: "error"}[r["status"]],
                    service=r["service"],
                    root_name=r["root_name"],
                )
                for r in expected
            ]
            assert found == want, kw
            checked += len(want)
        return checked
    finally:
        await conn.close()


def test_random_searches_over_small_pages_match_the_whole_window(
    database_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pages of a few rows and an early switch to the whole window: every page boundary, tie
    # and fallback path is taken many times over 400 traces of 1-3 rows.
    monkeypatch.setattr(traces, "FIRST_PAGE_ROWS", 2)
    monkeypatch.setattr(traces, "PAGE_GROWTH", 2)
    monkeypatch.setattr(traces, "PAGED_ROWS", 120)
    checked = asyncio.run(_random_scenario(database_dsn, random.Random(5)))
    assert checked > 300, "searches that found something, field by field"
