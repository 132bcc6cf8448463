"""``tidegate query``: raw points or bucketed aggregates of the selected series, printed as a
table (with a sparkline for a single series), JSON or CSV."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
from typing import Any

from tidegate.config import DEFAULT_TENANT, Config
from tidegate.database import reading_connection
from tidegate.errors import QueryError
from tidegate.query import (
    FORMATS,
    QueryResult,
    aggregate,
    parse_aggregation,
    parse_range,
    parse_selector,
    raw_points,
    render,
)


def add_parser(commands: Any) -> None:
    """Register the ``query`` subcommand."""
    query = commands.add_parser(
        "query",
        help="read stored metrics",
        description="Raw points (--raw) or an aggregate per step of the selected series.",
    )
    query.add_argument("selector", help="e.g. 'http.server.duration{service.name=\"api\"}'")
    query.add_argument(
        "--start",
        default="-1h",
        help="RFC 3339, Unix seconds, now-2h, or --start=-2h (default -1h)",
    )
    query.add_argument("--end", default="now", help="like --start (default now)")
    query.add_argument("--step", help="bucket length, e.g. 1m or 1h (default: the whole range)")
    query.add_argument(
        "--agg",
        default="avg",
        help="count, sum, avg (default), min, max, rate, increase, quantile, pNN",
    )
    query.add_argument("--q", type=float, help="the quantile for --agg quantile, e.g. 0.99")
    query.add_argument("--by", default="", help="comma-separated labels to group by")
    query.add_argument("--raw", action="store_true", help="raw points instead of an aggregate")
    query.add_argument("--format", default="table", help="table (default), json or csv")
    query.add_argument(
        "--tenant", default=DEFAULT_TENANT, help=f"whose data to read (default {DEFAULT_TENANT})"
    )
    query.add_argument("--config", help="TOML configuration file (storage and rollups)")
    query.add_argument("--dsn", help="PostgreSQL DSN (default: the embedded PostgreSQL)")
    query.add_argument("--data-dir", help="data directory of the embedded PostgreSQL")


def run(args: argparse.Namespace, config: Config) -> str:
    """Parse everything (raising ``QueryError`` before any connection), then query."""
    if args.format not in FORMATS:
        raise QueryError(f"unknown format {args.format!r}: use one of {', '.join(FORMATS)}")
    selector = parse_selector(args.selector)
    now = dt.datetime.now(dt.UTC)
    span = parse_range(args.start, args.end, args.step, now)
    by = tuple(label.strip() for label in args.by.split(",") if label.strip())
    agg = None if args.raw else parse_aggregation(args.agg, args.q)

    async def execute() -> QueryResult:
        async with reading_connection(config) as conn:
            if agg is None:
                return await raw_points(conn, selector, span, tenant=args.tenant)
            return await aggregate(
                conn,
                selector,
                span,
                agg,
                tenant=args.tenant,
                by=by,
                window_seconds=config.rollups.window_seconds,
                lateness_seconds=config.rollups.lateness_seconds,
                now=now,
            )

    return render(asyncio.run(execute()), args.format)
