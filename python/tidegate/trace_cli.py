"""``tidegate trace <id>`` (a waterfall in the terminal) and ``tidegate traces search``."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

from tidegate.config import DEFAULT_TENANT, Config
from tidegate.database import reading_connection
from tidegate.errors import QueryError
from tidegate.object_store import ObjectStore
from tidegate.query.timespec import parse_duration, parse_time
from tidegate.trace_render import search_table, waterfall
from tidegate.traces import STATUSES, get_trace, open_trace_store, parse_trace_id, search

T = TypeVar("T")


def add_parsers(commands: Any) -> None:
    """Register ``trace`` and ``traces``."""
    trace = commands.add_parser("trace", help="show one trace as a waterfall")
    trace.add_argument("trace_id", help="hex trace id (up to 32 digits)")
    trace.add_argument("--json", action="store_true", help="print the OTLP JSON instead")
    _tenant_flag(trace)
    _storage_flags(trace)
    traces = commands.add_parser("traces", help="search traces")
    actions = traces.add_subparsers(dest="action", required=True)
    found = actions.add_parser("search", help="traces matching every filter, newest first")
    found.add_argument("--start", default="-1h", help="like tidegate query (default -1h)")
    found.add_argument("--end", default="now")
    found.add_argument("--service", help="service.name of the root span")
    found.add_argument("--name", help="name of the root span")
    found.add_argument("--min-duration", help="e.g. 250ms")
    found.add_argument("--max-duration", help="e.g. 2s")
    found.add_argument("--status", choices=sorted(STATUSES))
    found.add_argument("--attribute", help="key=value of a span attribute")
    found.add_argument("--limit", type=int, default=20)
    _tenant_flag(found)
    _storage_flags(found)


def _tenant_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tenant",
        default=DEFAULT_TENANT,
        metavar="NAME",
        help=f"read only this tenant's traces (default {DEFAULT_TENANT!r})",
    )


def _storage_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="TOML configuration file")
    parser.add_argument("--dsn", help="PostgreSQL DSN (default: the embedded PostgreSQL)")
    parser.add_argument("--data-dir", help="data directory of the embedded defaults")


def run_trace(args: argparse.Namespace, config: Config) -> str:
    """The trace as a waterfall (or JSON); parses the id before connecting."""
    parse_trace_id(args.trace_id)

    async def read(conn: asyncpg.Connection, store: ObjectStore) -> dict[str, Any]:
        return await get_trace(conn, store, args.trace_id, tenant=args.tenant)

    document = _with_storage(config, read)
    if args.json:
        return json.dumps(document) + "\n"
    return waterfall(document, color=sys.stdout.isatty())


def run_search(args: argparse.Namespace, config: Config) -> str:
    """Search results as a table; parses every filter before connecting."""
    now = dt.datetime.now(dt.UTC)
    start, end = parse_time(args.start, now), parse_time(args.end, now)
    if start >= end:
        raise QueryError("--start must be before --end")
    low = parse_duration(args.min_duration) if args.min_duration else None
    high = parse_duration(args.max_duration) if args.max_duration else None
    if args.attribute is not None and "=" not in args.attribute:
        raise QueryError(f"--attribute must be key=value, got {args.attribute!r}")

    async def find(conn: asyncpg.Connection, _: ObjectStore) -> list[dict[str, Any]]:
        matches = await search(
            conn,
            start=start,
            end=end,
            service=args.service,
            name=args.name,
            min_duration=low,
            max_duration=high,
            status=args.status,
            attribute=args.attribute,
            limit=args.limit,
            tenant=args.tenant,
        )
        return [m.__dict__ for m in matches]

    return search_table(_with_storage(config, find))


def _with_storage(
    config: Config, work: Callable[[asyncpg.Connection, ObjectStore], Awaitable[T]]
) -> T:
    async def execute() -> T:
        async with reading_connection(config) as conn:
            store = await open_trace_store(config)
            try:
                return await work(conn, store)
            finally:
                await store.close()

    return asyncio.run(execute())
