"""Rollup rows of one series → per-bucket cells, following the merge rules of
``rust/window_agg.rs`` (docs/architecture.md, "Rollups"):

- partial rows of one (window, epoch, layout) merge first: additive types add, cumulative
  ones keep the newest state;
- cumulative types then become per-window increases: the newest state minus the previous
  window's state of the same epoch (a new epoch starts from zero, which is reset detection);
- cells of many windows and series add up, and an aggregation reads a value out of a cell.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from tidegate._core import TDigest, histogram_quantile
from tidegate.errors import QueryError
from tidegate.query.aggregation import AggKind, Aggregation
from tidegate.query.exp_buckets import ExpBuckets


class SeriesKind(enum.Enum):
    NUMBERS = "numbers"  # gauges, delta sums, non-monotonic sums: additive, with digests
    COUNTER = "counter"  # cumulative monotonic sums
    HISTOGRAM = "histogram"
    EXP_HISTOGRAM = "exponential_histogram"
    SUMMARY = "summary"


@dataclass(frozen=True)
class SeriesShape:
    kind: SeriesKind
    cumulative: bool
    # Delta sums: their values are increments, so increase and rate apply.
    increments: bool = False


def shape_of(metric_type: str, temporality: str | None, monotonic: bool | None) -> SeriesShape:
    """How a series' rollups merge, from its ``series`` row."""
    cumulative = temporality == "cumulative"
    if metric_type == "sum":
        if cumulative and monotonic:
            return SeriesShape(SeriesKind.COUNTER, True)
        return SeriesShape(SeriesKind.NUMBERS, False, increments=not cumulative)
    if metric_type == "histogram":
        return SeriesShape(SeriesKind.HISTOGRAM, cumulative)
    if metric_type == "exponential_histogram":
        return SeriesShape(SeriesKind.EXP_HISTOGRAM, cumulative)
    if metric_type == "summary":
        return SeriesShape(SeriesKind.SUMMARY, True)
    return SeriesShape(SeriesKind.NUMBERS, False)


@dataclass
class Cell:
    """What one bucket of one output series has gathered."""

    count: int = 0
    sum: float | None = 0.0
    min: float = math.inf
    max: float = -math.inf
    increase: float | None = None
    digests: list[bytes] = field(default_factory=list)
    bounds: tuple[float, ...] | None = None
    bucket_counts: list[int] | None = None
    exp: ExpBuckets | None = None
    summary_quantiles: dict[float, float] | None = None
    summaries: int = 0
    rows: int = 0

    def add(self, other: Cell) -> None:
        self.rows += other.rows
        self.count += other.count
        self.sum = None if self.sum is None or other.sum is None else self.sum + other.sum
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        if other.increase is not None:
            self.increase = (self.increase or 0.0) + other.increase
        self.digests.extend(other.digests)
        if other.bounds is not None and other.bucket_counts is not None:
            self.add_buckets(other.bounds, other.bucket_counts)
        if other.exp is not None:
            self.exp = other.exp if self.exp is None else self.exp.combined(other.exp)
        if other.summary_quantiles is not None:
            self.summary_quantiles = other.summary_quantiles
            self.summaries += other.summaries

    def add_buckets(self, bounds: tuple[float, ...], counts: list[int]) -> None:
        """Adds bucket counts (re-binned onto this cell's bounds if they differ)."""
        if self.bounds is None or self.bucket_counts is None:
            self.bounds, self.bucket_counts = bounds, list(counts)
        elif bounds == self.bounds:
            self.bucket_counts = [a + b for a, b in zip(self.bucket_counts, counts, strict=True)]
        else:
            # Rare (bounds changed): each count goes to the bucket holding its upper bound.
            uppers = [*bounds, math.inf]
            for upper, count in zip(uppers, counts, strict=True):
                index = sum(1 for b in self.bounds if b < upper)
                self.bucket_counts[index] += count

    def value(self, agg: Aggregation, step_seconds: float) -> float | None:
        """The aggregation's value for this cell; ``None`` when the cell has no data for it."""
        if self.rows == 0:
            return None
        kind = agg.kind
        if kind is AggKind.COUNT:
            return float(self.count)
        if kind is AggKind.SUM:
            return self.sum
        if kind is AggKind.AVG:
            return self.sum / self.count if self.sum is not None and self.count else None
        if kind is AggKind.MIN:
            return self.min if math.isfinite(self.min) else None
        if kind is AggKind.MAX:
            return self.max if math.isfinite(self.max) else None
        if kind is AggKind.INCREASE:
            return self.increase
        if kind is AggKind.RATE:
            return None if self.increase is None else self.increase / step_seconds
        return self._quantile(agg.q if agg.q is not None else 0.5)

    def _quantile(self, q: float) -> float | None:
        if self.digests:
            return TDigest.merged(self.digests).quantile(q)
        lo = self.min if math.isfinite(self.min) else -math.inf
        hi = self.max if math.isfinite(self.max) else math.inf
        if self.bounds is not None and self.bucket_counts is not None:
            return histogram_quantile(list(self.bounds), self.bucket_counts, q, lo, hi)
        if self.exp is not None:
            bounds, counts = self.exp.to_explicit()
            return histogram_quantile(bounds, counts, q, lo, hi)
        if self.summary_quantiles is not None:
            if self.summaries > 1:
                raise QueryError(
                    "summary quantiles cannot be merged across series: group by more labels"
                )
            return self.summary_quantiles.get(q)
        return None


Row = Mapping[str, Any]
# Sorts windows without an epoch before those with one.
NO_EPOCH = dt.datetime.min.replace(tzinfo=dt.UTC)


def _key(row: Row) -> tuple[Any, ...]:
    bounds = row["bounds"]
    return (row["window_start"], row["epoch_start"], tuple(bounds) if bounds is not None else None)


def add_grouped_row(cell: Cell, row: Row) -> None:
    """Adds one (group, bucket) sum of additive number rows, as ``engine.NUMBERS_SQL``
    returns it; ``digests`` holds the rows' digests back to back."""
    cell.rows += row["rows"]
    cell.count += row["count"]
    total = row["sum"]
    cell.sum = None if cell.sum is None or total is None else cell.sum + total
    if row["min"] is not None and row["min"] < cell.min:
        cell.min = row["min"]
    if row["max"] is not None and row["max"] > cell.max:
        cell.max = row["max"]
    if row["increase"] is not None:
        cell.increase = (cell.increase or 0.0) + row["increase"]
    if row["digests"]:
        cell.digests.append(row["digests"])


def add_additive_row(cell: Cell, row: Row, shape: SeriesShape) -> None:
    """Adds one partial row of a non-cumulative series straight into a cell: additive rows
    need no per-window merge first, so the common case builds no intermediate objects."""
    if row["exp_scale"] is not None or row["quantiles"] is not None:
        cell.add(_state(row, shape))
        return
    _add_common(cell, row, shape)


def _add_common(cell: Cell, row: Row, shape: SeriesShape) -> None:
    """The columns every kind of rollup row has: counts, sum, extremes, digest, buckets."""
    cell.rows += 1
    cell.count += row["count"]
    total = row["sum"]
    cell.sum = None if cell.sum is None or total is None else cell.sum + total
    if row["min"] is not None and row["min"] < cell.min:
        cell.min = row["min"]
    if row["max"] is not None and row["max"] > cell.max:
        cell.max = row["max"]
    if row["digest"] is not None:
        cell.digests.append(row["digest"])
    if row["bounds"] is not None:
        cell.add_buckets(tuple(row["bounds"]), row["bucket_counts"])
    if shape.increments and total is not None:
        cell.increase = (cell.increase or 0.0) + total


def _state(row: Row, shape: SeriesShape) -> Cell:
    """One partial row as a cell (before cumulative differences)."""
    cell = Cell()
    _add_common(cell, row, shape)
    if row["exp_scale"] is not None:
        cell.exp = ExpBuckets(
            row["exp_scale"],
            row["exp_zero_count"],
            row["exp_positive_offset"],
            tuple(row["exp_positive"]),
            row["exp_negative_offset"],
            tuple(row["exp_negative"]),
        )
    if row["quantiles"] is not None:
        cell.summary_quantiles = dict(zip(row["quantiles"], row["quantile_values"], strict=True))
        cell.summaries = 1
    return cell


@dataclass
class _Window:
    start: dt.datetime
    epoch: dt.datetime | None
    state: Cell
    last_time: dt.datetime
    first_value: float | None


def merge_partials(rows: Iterable[Row], shape: SeriesShape) -> list[_Window]:
    """Partial rows of one series merged per (window, epoch, layout), in time order."""
    merged: dict[tuple[Any, ...], _Window] = {}
    for row in rows:
        key = _key(row)
        state = _state(row, shape)
        found = merged.get(key)
        if found is None:
            merged[key] = _Window(
                row["window_start"], row["epoch_start"], state, row["last_time"], row["first_value"]
            )
        elif shape.cumulative and shape.kind is not SeriesKind.COUNTER:
            if row["last_time"] >= found.last_time:
                found.state, found.last_time = state, row["last_time"]
        else:
            found.state.add(state)
            found.last_time = max(found.last_time, row["last_time"])
    return sorted(merged.values(), key=lambda w: (w.start, w.epoch or NO_EPOCH))


def window_cells(
    windows: list[_Window], shape: SeriesShape, range_start: dt.datetime, lookback: dt.timedelta
) -> list[tuple[dt.datetime, Cell]]:
    """Each window in the range as a cell; cumulative types become differences between
    consecutive windows of one epoch. Windows before ``range_start`` only serve as baselines."""
    if not shape.cumulative:
        return [(w.start, w.state) for w in windows if w.start >= range_start]
    previous: dict[Any, _Window] = {}
    seen_any = False
    out: list[tuple[dt.datetime, Cell]] = []
    for w in windows:
        before = previous.get(w.epoch)
        if w.start >= range_start:
            out.append((w.start, _difference(w, before, shape, seen_any, lookback)))
        previous[w.epoch] = w
        seen_any = True
    return out


def _difference(
    w: _Window, before: _Window | None, shape: SeriesShape, seen_any: bool, lookback: dt.timedelta
) -> Cell:
    state = w.state
    if shape.kind is SeriesKind.COUNTER:
        # A counter's row holds min/max of its epoch's values: its first and last value.
        last = state.max
        if before is not None:
            base = before.state.max
        elif seen_any or (w.epoch is not None and w.epoch >= w.start - lookback):
            base = 0.0  # a new epoch (a reset) or one that started just now: counted from 0
        else:
            base = state.min  # first sight of a long-running counter: from its first value
        return replace(state, increase=max(0.0, last - base), digests=[])
    if before is None:
        return state
    prior = before.state
    cell = replace(state, count=state.count - prior.count, digests=[], min=math.inf, max=-math.inf)
    if state.sum is not None and prior.sum is not None:
        cell.sum = state.sum - prior.sum
    if (
        state.bucket_counts is not None
        and prior.bucket_counts is not None
        and state.bounds == prior.bounds
    ):
        cell.bucket_counts = [
            max(0, a - b) for a, b in zip(state.bucket_counts, prior.bucket_counts, strict=True)
        ]
    if state.exp is not None and prior.exp is not None:
        cell.exp = state.exp.combined(prior.exp, sign=-1)
    return cell
