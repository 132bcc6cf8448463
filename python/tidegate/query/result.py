"""What a query returns: one time series per group, ready to render."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field


@dataclass(frozen=True)
class SeriesResult:
    """One output series: its labels (the grouping labels, or every label of a raw series)
    and its points, in time order. ``None`` marks a bucket with no data."""

    labels: dict[str, str]
    times: list[dt.datetime] = field(default_factory=list)
    values: list[float | None] = field(default_factory=list)


@dataclass(frozen=True)
class QueryResult:
    """The answer to one query: ``aggregation`` is ``"raw"`` or a name such as ``"sum"`` or
    ``"quantile(0.99)"``; ``resolution_seconds`` is the rollup level that answered (0 for raw
    points)."""

    metric: str
    aggregation: str
    resolution_seconds: int
    series: list[SeriesResult]
