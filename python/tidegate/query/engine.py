"""Queries against what tidegate stored: series selection, raw points and bucketed
aggregates from the rollups.

Every query reads one tenant's series only (the tenant is part of a series' identity, so the
series selection scopes everything read after it). Every user-supplied string (tenant, metric
name, label names and values) is bound as a query parameter; the SQL texts are constants.
Regex matchers are applied in Python to the series the other matchers selected, so that they
mean exactly what ``re`` validated.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import asyncpg

from tidegate.config import DEFAULT_TENANT
from tidegate.errors import QueryError
from tidegate.query.aggregation import AggKind, Aggregation
from tidegate.query.cells import (
    Cell,
    SeriesKind,
    SeriesShape,
    add_additive_row,
    add_grouped_row,
    merge_partials,
    shape_of,
    window_cells,
)
from tidegate.query.result import QueryResult, SeriesResult
from tidegate.query.selector import MatchOp, Selector
from tidegate.query.timespec import TimeRange

HOUR = dt.timedelta(hours=1)
# A cumulative window needs the previous window of its epoch as baseline: rows this far
# before the range are read for that and nothing else.
LOOKBACK_WINDOWS = 2
# An hour is answered from hour rows once every daemon has written them: its end plus the
# lateness (its last window closed) plus a flush interval, with margin.
HOUR_SETTLE = dt.timedelta(seconds=60)

# The `=` matchers, as two parallel arrays of label names and values (a label absent from
# both attribute sets reads as ""); the others are checked in Python on `probe`, the values of
# their labels ($5), so that only the series they accept have their attributes parsed.
_SERIES = """
SELECT s.id, s.metric_type, s.temporality, s.monotonic, s.resource, s.attributes{probe}
FROM series AS s
WHERE s.tenant = $1 AND s.metric_name = $2
  AND NOT EXISTS (
      SELECT 1 FROM unnest($3::text[], $4::text[]) AS m (label, value)
      WHERE coalesce(s.attributes ->> m.label, s.resource ->> m.label, '') <> m.value)
"""
SERIES_SQL = _SERIES.format(probe="")
SERIES_PROBE_SQL = _SERIES.format(
    probe=""",
       ARRAY(SELECT coalesce(s.attributes ->> p.label, s.resource ->> p.label, '')
             FROM unnest($5::text[]) WITH ORDINALITY AS p (label, n) ORDER BY p.n) AS probe"""
)
# A chunk never spans two UTC days, so its start lies within a day of the range start.
RAW_SQL = """
SELECT c.series_id, p.time, p.value
FROM point_chunks AS c
CROSS JOIN LATERAL unnest(c.point_times, c.point_values) AS p (time, value)
WHERE c.series_id = ANY($1::bigint[])
  AND c.start_time >= $2 AND c.start_time < $4 AND c.end_time >= $3
  AND p.time >= $3 AND p.time < $4
ORDER BY c.series_id, p.time
"""
_ROLLUP_COLUMNS = """series_id, window_start, epoch_start, count, sum, min, max, first_value,
       last_time, bounds, bucket_counts, exp_scale, exp_zero_count, exp_positive_offset,
       exp_positive, exp_negative_offset, exp_negative, quantiles, quantile_values"""
_ROLLUP_WHERE = """
FROM rollups
WHERE series_id = ANY($1::bigint[])
  AND ((window_seconds = 3600 AND window_start >= $2 AND window_start < $3)
       OR (window_seconds = $4 AND window_start >= $5 AND window_start < $6))
"""
ROLLUPS_SQL = f"SELECT {_ROLLUP_COLUMNS}, NULL::bytea AS digest {_ROLLUP_WHERE}"
# Additive number series, summed per (group, bucket) by PostgreSQL: $1 series ids, $2 their
# group index, $3 whether their values are increments (delta sums), $4 the first bucket's
# start, $5 the step, hour rows from $4 to $6, window rows ($7 seconds) from there to $8.
_NUMBERS = """
SELECT g.grp, date_bin($5::interval, r.window_start, $4::timestamptz) AS bucket_start,
       count(*) AS rows, sum(r.count)::bigint AS count, sum(r.sum) AS sum,
       min(r.min) AS min, max(r.max) AS max,
       sum(r.sum) FILTER (WHERE g.increments) AS increase{digests}
FROM unnest($1::bigint[], $2::int[], $3::bool[]) AS g (id, grp, increments)
JOIN rollups AS r ON r.series_id = g.id
WHERE r.series_id = ANY($1::bigint[])
  AND ((r.window_seconds = 3600 AND r.window_start >= $4 AND r.window_start < $6)
       OR (r.window_seconds = $7 AND r.window_start >= greatest($4, $6) AND r.window_start < $8))
GROUP BY 1, 2
"""
NUMBERS_SQL = _NUMBERS.format(digests=", NULL::bytea AS digests")
NUMBERS_WITH_DIGESTS_SQL = _NUMBERS.format(digests=", string_agg(r.digest, ''::bytea) AS digests")
ROLLUPS_WITH_DIGEST_SQL = f"SELECT {_ROLLUP_COLUMNS}, digest {_ROLLUP_WHERE}"


@dataclass(frozen=True)
class SeriesInfo:
    """A selected series: its id, how its rollups merge, and its labels (point attributes
    over resource attributes)."""

    id: int
    shape: SeriesShape
    labels: dict[str, str]


async def find_series(
    conn: asyncpg.Connection, selector: Selector, *, tenant: str = DEFAULT_TENANT
) -> list[SeriesInfo]:
    """The series of ``selector.metric`` of ``tenant`` that every matcher accepts."""
    equal = [m for m in selector.matchers if m.op is MatchOp.EQ]
    others = [m for m in selector.matchers if m.op is not MatchOp.EQ]
    names, values = [m.label for m in equal], [m.value for m in equal]
    if others:
        probe = [m.label for m in others]
        rows = await conn.fetch(SERIES_PROBE_SQL, tenant, selector.metric, names, values, probe)
    else:
        rows = await conn.fetch(SERIES_SQL, tenant, selector.metric, names, values)
    found = []
    for row in rows:
        if not others or all(
            m.matches(value) for m, value in zip(others, row["probe"], strict=True)
        ):
            shape = shape_of(row["metric_type"], row["temporality"], row["monotonic"])
            labels = _labels(row["resource"], row["attributes"])
            found.append(SeriesInfo(row["id"], shape, labels))
    return found


def _labels(resource: str, attributes: str) -> dict[str, str]:
    merged = {**json.loads(resource), **json.loads(attributes)}
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in merged.items()}


async def raw_points(
    conn: asyncpg.Connection, selector: Selector, span: TimeRange, *, tenant: str = DEFAULT_TENANT
) -> QueryResult:
    """Every stored Gauge and Sum point of the selected series of ``tenant`` within the range."""
    series = await find_series(conn, selector, tenant=tenant)
    numbers = [s for s in series if s.shape.kind in (SeriesKind.NUMBERS, SeriesKind.COUNTER)]
    if len(numbers) < len(series):
        raise QueryError(
            "raw points are kept for gauges and sums; aggregate histograms and summaries"
        )
    by_id = {s.id: SeriesResult(s.labels) for s in numbers}
    day_start = span.start.replace(hour=0, minute=0, second=0, microsecond=0)
    rows = await conn.fetch(RAW_SQL, list(by_id), day_start, span.start, span.end)
    for row in rows:
        out = by_id[row["series_id"]]
        out.times.append(row["time"])
        out.values.append(row["value"])
    return QueryResult(selector.metric, "raw", 0, [by_id[s.id] for s in numbers])


@dataclass(frozen=True)
class _Plan:
    """Which rollup rows answer a query, and how they map to buckets."""

    start: dt.datetime
    step: dt.timedelta
    buckets: int
    end: dt.datetime
    window_seconds: int
    # Hour rows cover [start, hour_until); window rows [max(hour_until, start), end).
    hour_until: dt.datetime

    def bucket_of(self, window_start: dt.datetime) -> int | None:
        """The bucket a window (or hour) starting then falls in; None outside the range."""
        index = (window_start - self.start) // self.step
        return index if 0 <= index < self.buckets else None


async def aggregate(
    conn: asyncpg.Connection,
    selector: Selector,
    span: TimeRange,
    agg: Aggregation,
    *,
    tenant: str = DEFAULT_TENANT,
    by: tuple[str, ...] = (),
    window_seconds: int = 60,
    lateness_seconds: int = 60,
    now: dt.datetime | None = None,
) -> QueryResult:
    """``agg`` per bucket of ``span.step`` (one bucket for the whole range when ``None``),
    per group of ``by`` labels (all selected series together when empty), over the series of
    ``tenant``."""
    window = dt.timedelta(seconds=window_seconds)
    start = _floor(span.start, window)
    # Without a step, one bucket: the range rounded out to whole windows.
    step = span.step or -(-(span.end - start) // window) * window
    hours = step % HOUR == dt.timedelta(0) and start == _floor(start, HOUR)
    if not hours and step % window != dt.timedelta(0):
        raise QueryError(f"step must be a multiple of the {window_seconds} s rollup window")
    series = await find_series(conn, selector, tenant=tenant)
    now = now or dt.datetime.now(dt.UTC)
    # Hours whose rows are complete; later ones are answered from windows.
    settled = _floor(now - dt.timedelta(seconds=lateness_seconds) - HOUR_SETTLE, HOUR)
    plan = _Plan(
        start=start,
        step=step,
        buckets=max(1, -(-(span.end - start) // step)),
        end=span.end,
        window_seconds=window_seconds,
        hour_until=max(start, min(span.end, settled)) if hours else start,
    )
    groups: dict[tuple[str, ...], list[Cell]] = {}
    cells_of: dict[int, list[Cell]] = {}
    for s in series:
        group = tuple(s.labels.get(label, "") for label in by)
        if group not in groups:
            groups[group] = [Cell() for _ in range(plan.buckets)]
        cells_of[s.id] = groups[group]
    with_digests = agg.kind is AggKind.QUANTILE
    numbers = [s for s in series if s.shape.kind is SeriesKind.NUMBERS]
    if numbers:
        await _add_numbers(conn, numbers, cells_of, plan, with_digests)
    others = [s for s in series if s.shape.kind is not SeriesKind.NUMBERS]
    if others:
        await _add_rows(conn, others, cells_of, plan, with_digests)
    times = [start + i * step for i in range(plan.buckets)]
    out = [
        SeriesResult(
            dict(zip(by, group, strict=True)),
            list(times),
            [c.value(agg, step.total_seconds()) for c in cells],
        )
        for group, cells in sorted(groups.items())
    ]
    return QueryResult(
        selector.metric, str(agg), int((HOUR if hours else window).total_seconds()), out
    )


async def _add_numbers(
    conn: asyncpg.Connection,
    series: list[SeriesInfo],
    cells_of: dict[int, list[Cell]],
    plan: _Plan,
    with_digests: bool,
) -> None:
    """Gauges and non-counter sums: additive, so PostgreSQL sums their rows per (series
    group, bucket) and concatenates the digests; the core merges each concatenation."""
    group_ids: dict[int, int] = {}
    group_cells: list[list[Cell]] = []
    for s in series:
        cells = cells_of[s.id]
        if id(cells) not in group_ids:
            group_ids[id(cells)] = len(group_cells)
            group_cells.append(cells)
    rows = await conn.fetch(
        NUMBERS_WITH_DIGESTS_SQL if with_digests else NUMBERS_SQL,
        [s.id for s in series],
        [group_ids[id(cells_of[s.id])] for s in series],
        [s.shape.increments for s in series],
        plan.start,
        plan.step,
        plan.hour_until,
        plan.window_seconds,
        plan.end,
    )
    for row in rows:
        index = plan.bucket_of(row["bucket_start"])
        if index is not None:
            add_grouped_row(group_cells[row["grp"]][index], row)


async def _add_rows(
    conn: asyncpg.Connection,
    series: list[SeriesInfo],
    cells_of: dict[int, list[Cell]],
    plan: _Plan,
    with_digests: bool,
) -> None:
    """Counters, histograms and summaries: their rows merged in Python (cumulative ones need
    the rows of the windows, or hours, before the range as baselines)."""
    uses_hours = plan.hour_until > plan.start
    resolution = HOUR if uses_hours else dt.timedelta(seconds=plan.window_seconds)
    cumulative = any(s.shape.cumulative for s in series)
    lookback = LOOKBACK_WINDOWS * resolution if cumulative else dt.timedelta(0)
    if uses_hours:
        hour_from, window_from = plan.start - lookback, plan.hour_until
    else:
        hour_from, window_from = plan.start, plan.start - lookback
    rows = await conn.fetch(
        ROLLUPS_WITH_DIGEST_SQL if with_digests else ROLLUPS_SQL,
        [s.id for s in series],
        hour_from,
        plan.hour_until,
        plan.window_seconds,
        window_from,
        plan.end,
    )
    per_series: dict[int, list[Any]] = defaultdict(list)
    for row in rows:
        per_series[row["series_id"]].append(row)
    for s in series:
        cells = cells_of[s.id]
        rows_of_series = per_series.get(s.id, [])
        if not s.shape.cumulative:
            for row in rows_of_series:
                index = plan.bucket_of(row["window_start"])
                if index is not None:
                    add_additive_row(cells[index], row, s.shape)
            continue
        windows = merge_partials(rows_of_series, s.shape)
        for window_start, cell in window_cells(windows, s.shape, plan.start, lookback):
            index = plan.bucket_of(window_start)
            if index is not None:
                cells[index].add(cell)


def _floor(t: dt.datetime, unit: dt.timedelta) -> dt.datetime:
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return epoch + ((t - epoch) // unit) * unit
