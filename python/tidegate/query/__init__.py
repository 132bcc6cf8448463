"""Reading what tidegate stored: series selectors, raw points and bucketed aggregates from
the rollups (``tidegate query`` on the command line)."""

from tidegate.query.aggregation import AggKind, Aggregation, parse_aggregation
from tidegate.query.engine import SeriesInfo, aggregate, find_series, raw_points
from tidegate.query.render import FORMATS, render, sparkline
from tidegate.query.result import QueryResult, SeriesResult
from tidegate.query.selector import Matcher, MatchOp, Selector, parse_selector
from tidegate.query.timespec import TimeRange, parse_duration, parse_range, parse_time

__all__ = [
    "FORMATS",
    "AggKind",
    "Aggregation",
    "MatchOp",
    "Matcher",
    "QueryResult",
    "Selector",
    "SeriesInfo",
    "SeriesResult",
    "TimeRange",
    "aggregate",
    "find_series",
    "parse_aggregation",
    "parse_duration",
    "parse_range",
    "parse_selector",
    "parse_time",
    "raw_points",
    "render",
    "sparkline",
]
