"""Turning a QueryResult into text: a table for people, JSON and CSV for other programs.

Times are always printed as ISO 8601 UTC with a ``Z`` suffix so that every format sorts and
compares as plain text, whatever the timezone of the machine running the query.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
from collections.abc import Sequence

from tidegate.errors import QueryError
from tidegate.query.result import QueryResult, SeriesResult
from tidegate.query.selector import Matcher, MatchOp

FORMATS = ("table", "json", "csv")

_BARS = "▁▂▃▄▅▆▇█"
_FLAT_BAR = "▄"
_EMPTY = "-"


def render(result: QueryResult, fmt: str) -> str:
    """Format ``result`` as ``"table"``, ``"json"`` or ``"csv"``; the text ends with a newline."""
    if fmt == "table":
        return _table(result)
    if fmt == "json":
        return _json(result)
    if fmt == "csv":
        return _csv(result)
    raise QueryError(f"unknown output format {fmt!r}; expected one of {', '.join(FORMATS)}")


def sparkline(values: Sequence[float | None], width: int = 80) -> str:
    """Draw ``values`` as one line of block characters, lowest ``▁`` to highest ``█``.

    Missing (None) and non-finite values become a space; a series with one distinct value is
    drawn at mid height. More than ``width`` values are averaged down to ``width`` cells.
    """
    if width < 1:
        raise ValueError("sparkline width must be at least 1")
    cells: list[float | None] = [
        float(v) if v is not None and math.isfinite(v) else None for v in values
    ]
    if len(cells) > width:
        cells = _downsample(cells, width)
    present = [v for v in cells if v is not None]
    if not present:
        return " " * len(cells)
    low, high = min(present), max(present)
    if low == high:
        return "".join(" " if v is None else _FLAT_BAR for v in cells)
    # Halving keeps high - low finite when the values span nearly the whole float range.
    scale = 0.5 if math.isinf(high - low) else 1.0
    span = high * scale - low * scale
    top = len(_BARS) - 1
    return "".join(
        " " if v is None else _BARS[min(top, int((v * scale - low * scale) / span * len(_BARS)))]
        for v in cells
    )


def _downsample(cells: list[float | None], width: int) -> list[float | None]:
    out: list[float | None] = []
    for i in range(width):
        chunk = cells[i * len(cells) // width : (i + 1) * len(cells) // width]
        present = [v for v in chunk if v is not None]
        # Dividing before adding keeps the mean of huge values from overflowing.
        out.append(math.fsum(v / len(present) for v in present) if present else None)
    return out


def _iso(moment: dt.datetime) -> str:
    # A naive time is taken to be UTC already, as everywhere else in tidegate.
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
    micros = moment.microsecond
    spec = "seconds" if micros == 0 else "milliseconds" if micros % 1000 == 0 else "microseconds"
    return moment.isoformat(timespec=spec) + "Z"


def _number(value: float | None) -> str:
    return _EMPTY if value is None else f"{value:.6g}"


def _series_name(metric: str, series: SeriesResult) -> str:
    if not series.labels:
        return metric
    # Written in selector syntax so that a header can be pasted back into a query.
    labels = ", ".join(
        str(Matcher(name, MatchOp.EQ, value)) for name, value in sorted(series.labels.items())
    )
    return f"{metric}{{{labels}}}"


def _spark_line(values: Sequence[float | None]) -> str | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if len(finite) < 2:
        return None
    return f"{sparkline(values)}  min {min(finite):.6g} max {max(finite):.6g}"


def _table(result: QueryResult) -> str:
    if not result.series:
        return f"{result.metric}: no series\n"
    blocks: list[str] = []
    for series in result.series:
        lines = [_series_name(result.metric, series)]
        spark = _spark_line(series.values) if len(result.series) == 1 else None
        if spark is not None:
            lines.append(spark)
        if not series.times:
            lines.append("(no points)")
        times = [_iso(t) for t in series.times]
        values = [_number(v) for v in series.values]
        time_width = max(map(len, times), default=0)
        value_width = max(map(len, values), default=0)
        lines.extend(
            f"{t:<{time_width}}  {v:>{value_width}}" for t, v in zip(times, values, strict=True)
        )
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def _json_value(value: float | None) -> float | str | None:
    if value is None:
        return None
    value = float(value)
    if math.isfinite(value):
        return value
    # JSON has no NaN or infinity; these are the strings the Prometheus HTTP API uses.
    return "NaN" if math.isnan(value) else "+Inf" if value > 0 else "-Inf"


def _json(result: QueryResult) -> str:
    document = {
        "metric": result.metric,
        "aggregation": result.aggregation,
        "resolution_seconds": result.resolution_seconds,
        "series": [
            {
                "labels": dict(sorted(series.labels.items())),
                "points": [
                    [_iso(t), _json_value(v)]
                    for t, v in zip(series.times, series.values, strict=True)
                ],
            }
            for series in result.series
        ],
    }
    return json.dumps(document, ensure_ascii=False, allow_nan=False) + "\n"


def _csv(result: QueryResult) -> str:
    columns = sorted({name for series in result.series for name in series.labels})
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["time", *columns, "value"])
    for series in result.series:
        labels = [series.labels.get(name, "") for name in columns]
        for t, v in zip(series.times, series.values, strict=True):
            # repr() is the shortest text that reads back as the same float.
            writer.writerow([_iso(t), *labels, "" if v is None else repr(float(v))])
    return out.getvalue()
