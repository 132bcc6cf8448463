# Scenario: query latency over 10 M stored gauge points of 10,000 series, through the real daemon.
"""Query latency of ``tidegate.query`` over a realistic stored data set.

Data: one gauge metric, ``bench.query.gauge``, with ``--series`` series (labels ``host`` =
``host-0000`` …, ``region`` of 10 values by ``index % 10``, ``cluster`` = ``c00`` … by ``index //
1000``, so a cluster is 1,000 series spread over the 10 regions, and ``env``), each with
``--points-per-series`` points every 10 s ending about 2 minutes before the build. The
``--hot`` series that the single-series queries use (``host-0000``, ``host-1000``, …) also get
24 hours of history before that, one point every 15 s. Values are lognormal (mu 3, sigma 0.5,
seeded): a p95 should come out near exp(3 + 0.5 * 1.645) = 45.7, a p99 near exp(3 + 0.5 * 2.326)
= 64.3 (an hour of one series, 240 values, reads a little lower).

Load: a throwaway embedded PostgreSQL, the real daemon (``tidegate serve``, a subprocess on free
loopback ports), and the data sent as pre-serialized ``ExportMetricsServiceRequest`` bytes of
1,000 points by raw-bytes unary gRPC calls from ``--senders`` concurrent streams. Requests go
hour by hour, series by series, so that a series' hour usually lands in one flush: every minute
window and every hour becomes one rollup row, as in a daemon that receives points live (one row
per window and hour); points are stored as chunks of up to an hour of one series. Once every
point is stored the daemon is stopped with SIGTERM, which writes the windows and the hour still
open, then ``VACUUM ANALYZE``.

Queries: each API call is timed end to end on one asyncpg connection (SQL and Python merging),
after ``--warmup`` calls, rotating over the hot series (or the 10 clusters), for ``--rounds``
rounds. The SQL time of each call (series lookup and data fetch, asyncpg decoding included) is
taken from a timing wrapper around the connection, so Python's share is the rest.

    .venv/bin/python bench/bench_query.py [--series 10000] [--points-per-series 1000]
        [--rounds 50] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import math
import os
import random
import re
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# Before grpc is imported, which happens here before the bench package's own setting.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import asyncpg
import grpc
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import Gauge, Metric, NumberDataPoint
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

if __package__ in (None, ""):
    # Run as `python bench/bench_query.py`: make the `bench` package importable.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.procwatch import free_port, stop_process, wait_http_ok
from tidegate.query import (
    Aggregation,
    QueryResult,
    TimeRange,
    aggregate,
    find_series,
    parse_aggregation,
    parse_selector,
    raw_points,
)
from tidegate.query.engine import HOUR_SETTLE

METRIC = "bench.query.gauge"
UNIT = "ms"
REGIONS = tuple(f"region-{r}" for r in range(10))
CLUSTER_SIZE = 1000
RESOURCE = (("service.name", "tidegate-bench-query"), ("deployment.environment", "bench"))
MU, SIGMA = 3.0, 0.5
NS = 1_000_000_000
MINUTE = dt.timedelta(minutes=1)
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)
# The daemon's defaults, which the engine needs to pick hour rows.
LATENESS_S = 60
EXPORT_METHOD = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})
READY_TIMEOUT_S = 60.0
STORE_TIMEOUT_S = 900.0
DRAIN_TIMEOUT_S = 300.0
_POINT = struct.Struct("<BQBd")  # NumberDataPoint fields 3 (time, fixed64) and 4 (double)


# --- the data set -----------------------------------------------------------------------------


@dataclass(frozen=True)
class DataSet:
    """What is sent: dense data for every series, 24 h of history for the hot ones."""

    series: int
    points_per_series: int
    interval_s: int
    history_interval_s: int
    hot: tuple[int, ...]
    dense_start_ns: int
    dense_end_ns: int  # the last dense timestamp
    history_start_ns: int

    @property
    def width(self) -> int:
        return max(4, len(str(self.series - 1)))

    def host(self, index: int) -> str:
        return f"host-{index:0{self.width}d}"

    def clusters(self) -> int:
        return -(-self.series // CLUSTER_SIZE)

    def cluster_size(self, cluster: int) -> int:
        return min(CLUSTER_SIZE, self.series - cluster * CLUSTER_SIZE)

    def labels(self, index: int) -> list[tuple[str, str]]:
        return [
            ("host", self.host(index)),
            ("region", REGIONS[index % len(REGIONS)]),
            ("cluster", f"c{index // CLUSTER_SIZE:02d}"),
            ("env", "prod"),
        ]

    def dense_times(self) -> list[int]:
        step = self.interval_s * NS
        return list(range(self.dense_start_ns, self.dense_end_ns + 1, step))

    def history_times(self) -> list[int]:
        step = self.history_interval_s * NS
        return list(range(self.history_start_ns, self.dense_start_ns, step))


def plan_data_set(args: argparse.Namespace, now_ns: int) -> DataSet:
    interval = args.interval
    end = (now_ns - 120 * NS) // (interval * NS) * (interval * NS)
    start = end - (args.points_per_series - 1) * interval * NS
    history_step = args.history_interval * NS
    history_start = -(-(end - 24 * 3600 * NS) // history_step) * history_step
    hot_count = min(args.hot, args.series)
    stride = max(1, args.series // hot_count)
    hot = tuple(sorted({min(args.series - 1, i * stride) for i in range(hot_count)}))
    return DataSet(
        series=args.series,
        points_per_series=args.points_per_series,
        interval_s=interval,
        history_interval_s=args.history_interval,
        hot=hot,
        dense_start_ns=start,
        dense_end_ns=end,
        history_start_ns=min(history_start, start),
    )


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: int, payload: bytes) -> bytes:
    """A length-delimited field whose tag byte (field number << 3 | 2) is below 128."""
    return bytes((tag,)) + _varint(len(payload)) + payload


def _kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


@dataclass
class Request:
    body: bytes
    points: int


class RequestBuilder:
    """Hand-encodes requests of one gauge metric (the protobuf package encodes the attribute
    and resource messages once; each point is then two struct fields plus those bytes)."""

    def __init__(self, data: DataSet, seed: int) -> None:
        self.data = data
        self.rng = random.Random(seed)
        self._series_bytes: dict[int, tuple[bytes, bytes]] = {}
        resource = Resource(attributes=[_kv(k, v) for k, v in RESOURCE]).SerializeToString()
        scope = InstrumentationScope(name="tidegate.bench.query", version="1").SerializeToString()
        self._resource_field = _field(0x0A, resource)
        self._scope_field = _field(0x0A, scope)
        self._metric_head = _field(0x0A, METRIC.encode()) + _field(0x1A, UNIT.encode())

    def _series(self, index: int) -> tuple[bytes, bytes]:
        found = self._series_bytes.get(index)
        if found is None:
            attrs = b"".join(
                _field(0x3A, _kv(k, v).SerializeToString()) for k, v in self.data.labels(index)
            )
            # Gauge.data_points (field 1): tag, length, then the point's fields.
            found = (b"\x0a" + _varint(_POINT.size + len(attrs)), attrs)
            self._series_bytes[index] = found
        return found

    def value(self) -> float:
        return math.exp(MU + SIGMA * self.rng.gauss(0.0, 1.0))

    def encode(self, segments: list[tuple[int, list[int], list[float]]]) -> bytes:
        """One request: one resource, one scope, one metric holding every segment's points."""
        parts: list[bytes] = []
        pack = _POINT.pack
        for index, times, values in segments:
            head, attrs = self._series(index)
            for t, v in zip(times, values, strict=True):
                parts += (head, pack(0x19, t, 0x21, v), attrs)
        metric = self._metric_head + _field(0x2A, b"".join(parts))
        scope_metrics = self._scope_field + _field(0x12, metric)
        resource_metrics = self._resource_field + _field(0x12, scope_metrics)
        return _field(0x0A, resource_metrics)

    def reference(self, segments: list[tuple[int, list[int], list[float]]]) -> bytes:
        """The same request built with the protobuf package, to check ``encode`` against."""
        request = ExportMetricsServiceRequest()
        rm = request.resource_metrics.add()
        rm.resource.attributes.extend(_kv(k, v) for k, v in RESOURCE)
        sm = rm.scope_metrics.add()
        sm.scope.name, sm.scope.version = "tidegate.bench.query", "1"
        metric = Metric(name=METRIC, unit=UNIT, gauge=Gauge())
        for index, times, values in segments:
            attrs = [_kv(k, v) for k, v in self.data.labels(index)]
            for t, v in zip(times, values, strict=True):
                metric.gauge.data_points.append(
                    NumberDataPoint(time_unix_nano=t, as_double=v, attributes=attrs)
                )
        sm.metrics.append(metric)
        return request.SerializeToString()


def _segments_by_hour(data: DataSet) -> Iterator[tuple[int, list[int]]]:
    """(series, times) of one series within one UTC hour: oldest hour first, history before
    dense data within an hour, series in index order."""
    hour_ns = 3600 * NS
    by_hour: dict[int, list[tuple[int, list[int]]]] = {}

    def split(times: list[int]) -> dict[int, list[int]]:
        hours: dict[int, list[int]] = {}
        for t in times:
            hours.setdefault(t - t % hour_ns, []).append(t)
        return hours

    history = split(data.history_times())
    for hour, times in history.items():
        by_hour.setdefault(hour, []).extend((index, times) for index in data.hot)
    dense = split(data.dense_times())
    for hour, times in dense.items():
        by_hour.setdefault(hour, []).extend((index, times) for index in range(data.series))
    for hour in sorted(by_hour):
        yield from by_hour[hour]


def build_requests(data: DataSet, points_per_request: int, seed: int) -> list[Request]:
    """Every point of the data set as requests of ``points_per_request`` points (the last
    one shorter); a series' hour is split across two requests only at a request boundary."""
    builder = RequestBuilder(data, seed)
    requests: list[Request] = []
    pending: list[tuple[int, list[int], list[float]]] = []
    filled = 0

    def emit() -> None:
        nonlocal pending, filled
        if pending:
            requests.append(Request(builder.encode(pending), filled))
            if len(requests) == 1:
                check = ExportMetricsServiceRequest.FromString(requests[0].body)
                expected = ExportMetricsServiceRequest.FromString(builder.reference(pending))
                if check != expected:
                    raise RuntimeError("hand-encoded request differs from the protobuf one")
        pending, filled = [], 0

    for index, times in _segments_by_hour(data):
        offset = 0
        while offset < len(times):
            take = min(len(times) - offset, points_per_request - filled)
            chunk = times[offset : offset + take]
            pending.append((index, chunk, [builder.value() for _ in chunk]))
            filled += take
            offset += take
            if filled == points_per_request:
                emit()
    emit()
    return requests


# --- loading through the daemon -----------------------------------------------------------------


@dataclass
class LoadFigures:
    requests: int = 0
    points_sent: int = 0
    points_rejected: int = 0
    retries: int = 0
    build_s: float = 0.0
    send_s: float = 0.0
    stored_s: float = 0.0  # from the first request until every point was stored
    drain_s: float = 0.0  # SIGTERM until the daemon exited
    daemon_exit_code: int = 0

    @property
    def sent_per_s(self) -> float:
        return self.points_sent / self.send_s if self.send_s else 0.0

    @property
    def stored_per_s(self) -> float:
        return self.points_sent / self.stored_s if self.stored_s else 0.0


async def send_all(target: str, requests: list[Request], senders: int, load: LoadFigures) -> None:
    """Send every request once from ``senders`` concurrent streams, in order."""
    options = [
        ("grpc.max_send_message_length", 64 * 1024 * 1024),
        ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ]
    next_index = 0

    async with grpc.aio.insecure_channel(target, options=options) as channel:
        await asyncio.wait_for(channel.channel_ready(), timeout=30)
        export = channel.unary_unary(
            EXPORT_METHOD, request_serializer=None, response_deserializer=None
        )

        async def stream() -> None:
            nonlocal next_index
            while next_index < len(requests):
                request = requests[next_index]
                next_index += 1
                while True:
                    try:
                        body = await export(request.body, timeout=60)
                    except grpc.aio.AioRpcError as error:
                        if error.code() not in RETRYABLE:
                            raise
                        load.retries += 1
                        await asyncio.sleep(0.05)
                        continue
                    break
                response = ExportMetricsServiceResponse.FromString(body)
                load.points_rejected += response.partial_success.rejected_data_points
                load.points_sent += request.points
                load.requests += 1

        await asyncio.gather(*(stream() for _ in range(senders)))
    if load.points_rejected:
        raise RuntimeError(f"the daemon rejected {load.points_rejected} points")


async def wait_stored(dsn: str, expected: int, timeout_s: float) -> int:
    """Poll the stored point count until it reaches ``expected``."""
    conn = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + timeout_s
        stored = 0
        while time.monotonic() < deadline:
            stored = int(
                await conn.fetchval("SELECT coalesce(sum(point_count), 0) FROM point_chunks")
            )
            if stored >= expected:
                return stored
            await asyncio.sleep(0.25)
        raise TimeoutError(f"{stored:,} of {expected:,} points stored after {timeout_s:.0f} s")
    finally:
        await conn.close()


@dataclass
class StoredFigures:
    points: int
    chunk_rows: int
    minute_rollup_rows: int
    hour_rollup_rows: int
    series: int
    database_mib: float
    point_chunks_mib: float
    rollups_mib: float


async def stored_figures(conn: asyncpg.Connection) -> StoredFigures:
    points, chunks = await conn.fetchrow(
        "SELECT coalesce(sum(point_count), 0), count(*) FROM point_chunks"
    )
    rollups = dict(
        await conn.fetch("SELECT window_seconds, count(*) FROM rollups GROUP BY window_seconds")
    )
    size_sql = (
        "SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0)::bigint FROM pg_inherits"
        " WHERE inhparent = $1::regclass"
    )
    return StoredFigures(
        points=int(points),
        chunk_rows=int(chunks),
        minute_rollup_rows=int(rollups.get(60, 0)),
        hour_rollup_rows=int(rollups.get(3600, 0)),
        series=int(await conn.fetchval("SELECT count(*) FROM series")),
        database_mib=await conn.fetchval("SELECT pg_database_size(current_database())") / 2**20,
        point_chunks_mib=await conn.fetchval(size_sql, "point_chunks") / 2**20,
        rollups_mib=await conn.fetchval(size_sql, "rollups") / 2**20,
    )


def _tidegate_command(explicit: str | None) -> str:
    sibling = Path(sys.executable).with_name("tidegate")
    found = explicit or (str(sibling) if sibling.exists() else shutil.which("tidegate"))
    if not found:
        raise SystemExit("no `tidegate` executable: install the project or pass --tidegate")
    return found


def load_data(
    args: argparse.Namespace, workdir: Path, dsn: str, data: DataSet, requests: list[Request]
) -> LoadFigures:
    """Run the daemon, send every request, wait until all is stored, stop the daemon."""
    load = LoadFigures()
    grpc_port, http_port = free_port(), free_port()
    command = [
        _tidegate_command(args.tidegate),
        "serve",
        "--dsn",
        dsn,
        "--data-dir",
        str(workdir / "tidegate-data"),
        "--grpc-listen",
        f"127.0.0.1:{grpc_port}",
        "--http-listen",
        f"127.0.0.1:{http_port}",
    ]
    log_path = workdir / "tidegate.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        try:
            wait_http_ok(f"http://127.0.0.1:{http_port}/readyz", process, READY_TIMEOUT_S)
        except (RuntimeError, TimeoutError):
            print(log_path.read_text(errors="replace")[-4000:], file=sys.stderr)
            raise
        expected = sum(r.points for r in requests)
        started = time.monotonic()
        asyncio.run(send_all(f"127.0.0.1:{grpc_port}", requests, args.senders, load))
        load.send_s = time.monotonic() - started
        asyncio.run(wait_stored(dsn, expected, STORE_TIMEOUT_S))
        load.stored_s = time.monotonic() - started
        # SIGTERM writes every window and hour still open (the current hour, at least).
        drain_started = time.monotonic()
        load.daemon_exit_code = stop_process(process, DRAIN_TIMEOUT_S)
        load.drain_s = time.monotonic() - drain_started
        if load.daemon_exit_code != 0:
            print(log_path.read_text(errors="replace")[-4000:], file=sys.stderr)
            raise RuntimeError(f"the daemon exited with {load.daemon_exit_code}")
    finally:
        stop_process(process, 10)
    return load


# --- the queries ------------------------------------------------------------------------------


class TimedConnection:
    """Delegates to an asyncpg connection and records how long each ``fetch`` took."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        self.calls: list[tuple[float, int]] = []  # (seconds, rows) per fetch
        self.statements: list[tuple[str, tuple[Any, ...]]] = []  # (SQL, arguments) per fetch

    async def fetch(self, query: str, *args: Any) -> list[Any]:
        started = time.perf_counter()
        rows = await self._conn.fetch(query, *args)
        self.calls.append((time.perf_counter() - started, len(rows)))
        self.statements.append((query, args))
        return list(rows)

    def clear(self) -> None:
        self.calls.clear()
        self.statements.clear()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


@dataclass
class QueryFigures:
    key: str
    description: str
    selector: str
    target_ms: float | None
    rounds: int
    p50_ms: float
    p95_ms: float
    max_ms: float
    series_sql_p50_ms: float  # the series lookup (find_series' fetch)
    data_sql_p50_ms: float  # the points or rollups fetch
    python_p50_ms: float  # everything else: JSON labels, regex, merging, digests
    rows_fetched: int  # series rows + data rows, last round
    result: str
    verdict: str
    plans: list[str]  # EXPLAIN ANALYZE of the last round's statements, with --explain


# An array literal of hundreds of series ids in a plan line: shown as its length.
_LONG_ARRAY = re.compile(r"'\{[^}']{200,}\}'")


def _abbreviate(match: re.Match[str]) -> str:
    return f"'{{... {match.group(0).count(',') + 1} values}}'"


def _quantile(samples: list[float], q: float) -> float:
    if len(samples) < 2:
        return samples[0]
    return statistics.quantiles(samples, n=100, method="inclusive")[round(q * 100) - 1]


QueryCall = Callable[[TimedConnection, str], Awaitable[QueryResult]]


@dataclass
class QuerySpec:
    key: str
    description: str
    target_ms: float | None
    selectors: list[str]  # one per round, in turn
    call: QueryCall
    check: Callable[[QueryResult], str]  # raises on a wrong answer; returns a summary
    rounds: int
    group_size: int = 0  # series each selector must select (grouped queries)


async def measure(
    conn: asyncpg.Connection, spec: QuerySpec, warmup: int, explain: bool
) -> QueryFigures:
    timed = TimedConnection(conn)
    totals: list[float] = []
    series_sql: list[float] = []
    data_sql: list[float] = []
    summary = ""
    for i in range(warmup + spec.rounds):
        selector = spec.selectors[i % len(spec.selectors)]
        timed.clear()
        started = time.perf_counter()
        result = await spec.call(timed, selector)
        elapsed = time.perf_counter() - started
        summary = spec.check(result)
        if i < warmup:
            continue
        totals.append(elapsed * 1000)
        series_sql.append(timed.calls[0][0] * 1000)
        data_sql.append(sum(s for s, _ in timed.calls[1:]) * 1000)
    rows = sum(n for _, n in timed.calls)
    plans = []
    if explain:
        for sql, sql_args in timed.statements:
            lines = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", *sql_args)
            plans.append("\n".join(_LONG_ARRAY.sub(_abbreviate, r[0]) for r in lines))
    python = [t - a - b for t, a, b in zip(totals, series_sql, data_sql, strict=True)]
    p95 = _quantile(totals, 0.95)
    verdict = "-" if spec.target_ms is None else ("PASS" if p95 < spec.target_ms else "MISS")
    return QueryFigures(
        key=spec.key,
        description=spec.description,
        selector=spec.selectors[0]
        + (f" (+{len(spec.selectors) - 1})" if spec.selectors[1:] else ""),
        target_ms=spec.target_ms,
        rounds=spec.rounds,
        p50_ms=statistics.median(totals),
        p95_ms=p95,
        max_ms=max(totals),
        series_sql_p50_ms=statistics.median(series_sql),
        data_sql_p50_ms=statistics.median(data_sql),
        python_p50_ms=statistics.median(python),
        rows_fetched=rows,
        result=summary,
        verdict=verdict,
        plans=plans,
    )


def _dt(ns: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ns // NS, dt.UTC)


def _floor(t: dt.datetime, unit: dt.timedelta) -> dt.datetime:
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return epoch + ((t - epoch) // unit) * unit


@dataclass
class Ranges:
    now: dt.datetime
    last_hour: TimeRange  # raw, and with step 1m
    day: TimeRange  # 24 hours, step 1h
    day_hours_from_hour_rows: int
    group_hour: TimeRange  # one hour answered by hour rows, step 1h
    group_hour_coverage: float  # share of that hour inside the dense data


def plan_ranges(data: DataSet, now: dt.datetime) -> Ranges:
    dense_start, dense_end = _dt(data.dense_start_ns), _dt(data.dense_end_ns)
    end = _floor(dense_end, MINUTE)
    day_end = _floor(now, HOUR)
    # The engine's rule: hours starting before `settled` are answered from hour rows. The
    # newest such hour is the one a grouped query can read from hour rows only.
    settled = _floor(now - HOUR - dt.timedelta(seconds=LATENESS_S) - HOUR_SETTLE, HOUR)
    group = settled - HOUR
    covered = min(group + HOUR, dense_end) - max(group, dense_start)
    return Ranges(
        now=now,
        last_hour=TimeRange(end - HOUR, end, None),
        day=TimeRange(day_end - DAY, day_end, HOUR),
        day_hours_from_hour_rows=max(0, min(24, (settled - (day_end - DAY)) // HOUR)),
        group_hour=TimeRange(group, group + HOUR, HOUR),
        group_hour_coverage=max(0.0, covered / HOUR),
    )


def query_specs(data: DataSet, ranges: Ranges, rounds: int, variant_rounds: int) -> list[QuerySpec]:
    hot = [f'{METRIC}{{host="{data.host(i)}"}}' for i in data.hot]
    # Whole clusters (1,000 series each); a smaller data set has one partial cluster.
    clusters = [c for c in range(data.clusters()) if data.cluster_size(c) == CLUSTER_SIZE] or [0]
    digits = data.width - 3
    by_cluster = {f'{METRIC}{{cluster="c{c:02d}"}}': c for c in clusters}
    by_regex = {f'{METRIC}{{host=~"host-{c:0{digits}d}[0-9]{{3}}"}}': c for c in clusters}
    group_size = data.cluster_size(clusters[0])
    regions = min(len(REGIONS), group_size)
    hour_points = int(HOUR.total_seconds()) // data.interval_s
    full_hour = _dt(data.dense_start_ns) <= ranges.last_hour.start
    now = ranges.now
    p99, p95, avg = (parse_aggregation(a) for a in ("quantile(0.99)", "quantile(0.95)", "avg"))
    per_minute = TimeRange(ranges.group_hour.start, ranges.group_hour.end, MINUTE)
    bucketed = TimeRange(ranges.last_hour.start, ranges.last_hour.end, MINUTE)

    def one_series(result: QueryResult) -> list[Any]:
        if len(result.series) != 1:
            raise RuntimeError(f"expected one series, got {len(result.series)}")
        return result.series[0].values

    def check_raw(result: QueryResult) -> str:
        n = len(one_series(result))
        if full_hour and n != hour_points:
            raise RuntimeError(f"raw hour: expected {hour_points} points, got {n}")
        return f"{n} points"

    def check_bucketed(result: QueryResult) -> str:
        values = one_series(result)
        filled = sum(v is not None for v in values)
        if len(values) != 60 or (full_hour and filled != 60):
            raise RuntimeError(f"1m buckets: {filled} of {len(values)} filled")
        return f"{filled}/{len(values)} buckets, res {result.resolution_seconds} s"

    def check_day(result: QueryResult) -> str:
        values = one_series(result)
        if result.resolution_seconds != 3600:
            raise RuntimeError(f"24 h: resolution {result.resolution_seconds}, expected 3600")
        filled = [v for v in values if v is not None]
        if len(values) != 24 or len(filled) < 23:
            raise RuntimeError(f"24 h: {len(filled)} of {len(values)} hours filled")
        return f"{len(filled)}/24 h, res 3600 s, median p99 {statistics.median(filled):.1f}"

    def check_group(buckets: int) -> Callable[[QueryResult], str]:
        def check(result: QueryResult) -> str:
            if result.resolution_seconds != (3600 if buckets == 1 else 60):
                raise RuntimeError(f"grouped: resolution {result.resolution_seconds}")
            if len(result.series) != regions:
                raise RuntimeError(f"grouped: {len(result.series)} groups, expected {regions}")
            if {len(s.values) for s in result.series} != {buckets}:
                raise RuntimeError(f"grouped: expected {buckets} buckets per group")
            first = result.series[0].values[0]
            shown = "none" if first is None else f"{first:.1f}"
            return (
                f"{len(result.series)} groups x {buckets}, res {result.resolution_seconds} s,"
                f" p95 {shown}"
            )

        return check

    async def raw(conn: TimedConnection, selector: str) -> QueryResult:
        return await raw_points(conn, parse_selector(selector), ranges.last_hour)

    def agg(span: TimeRange, aggregation: Aggregation, by: tuple[str, ...] = ()) -> QueryCall:
        async def call(conn: TimedConnection, selector: str) -> QueryResult:
            selected = parse_selector(selector)
            return await aggregate(conn, selected, span, aggregation, by=by, now=now)

        return call

    group_check = check_group(1)
    by = ("region",)
    n = f"{group_size:,}"
    return [
        QuerySpec("a", "1 series, raw points, 1 h", 20, hot, raw, check_raw, rounds),
        QuerySpec(
            "b", "1 series, avg per 1m, 1 h", 20, hot, agg(bucketed, avg), check_bucketed, rounds
        ),
        QuerySpec(
            "c", "1 series, p99 per 1h, 24 h", 50, hot, agg(ranges.day, p99), check_day, rounds
        ),
        QuerySpec(
            "d",
            f"{n} series by region, p95, 1 h",
            200,
            list(by_cluster),
            agg(ranges.group_hour, p95, by),
            group_check,
            rounds,
            group_size,
        ),
        QuerySpec(
            "d-re",
            "as d, selected by host regex",
            200,
            list(by_regex),
            agg(ranges.group_hour, p95, by),
            group_check,
            rounds,
            group_size,
        ),
        QuerySpec(
            "d-1m",
            "as d, p95 per 1m (60 buckets)",
            200,
            list(by_cluster),
            agg(per_minute, p95, by),
            check_group(60),
            rounds=variant_rounds,
            group_size=group_size,
        ),
    ]


async def check_selection(conn: asyncpg.Connection, specs: list[QuerySpec]) -> None:
    """Every grouped selector really selects a whole cluster (1,000 series at full size)."""
    for spec in specs:
        for selector in spec.selectors if spec.group_size else ():
            found = await find_series(conn, parse_selector(selector))
            if len(found) != spec.group_size:
                raise RuntimeError(
                    f"{selector} selects {len(found)} series, expected {spec.group_size}"
                )


async def run_queries(
    dsn: str, data: DataSet, args: argparse.Namespace
) -> tuple[StoredFigures, Ranges, list[QueryFigures]]:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("VACUUM ANALYZE")
        stored = await stored_figures(conn)
        ranges = plan_ranges(data, dt.datetime.now(dt.UTC))
        specs = query_specs(data, ranges, args.rounds, args.variant_rounds)
        await check_selection(conn, specs)
        figures = []
        for spec in specs:
            figures.append(await measure(conn, spec, args.warmup, args.explain))
            print(f"measured {spec.key}: p95 {figures[-1].p95_ms:.1f} ms", file=sys.stderr)
        return stored, ranges, figures
    finally:
        await conn.close()


# --- report -----------------------------------------------------------------------------------


@dataclass
class Report:
    series: int
    points_per_series: int
    interval_s: int
    hot_series: int
    load: dict[str, Any]
    stored: dict[str, Any]
    ranges: dict[str, str]
    queries: list[dict[str, Any]] = field(default_factory=list)


def print_table(report: Report, load: LoadFigures, stored: StoredFigures) -> None:
    print()
    print(
        f"data set: {report.series:,} series x {report.points_per_series:,} points every"
        f" {report.interval_s} s"
        f" + 24 h of history for {report.hot_series} series"
    )
    print(
        f"stored: {stored.points:,} points in {stored.chunk_rows:,} chunk rows,"
        f" {stored.minute_rollup_rows:,} minute + {stored.hour_rollup_rows:,} hour rollup rows,"
        f" {stored.series:,} series"
    )
    print(
        f"database: {stored.database_mib:,.0f} MiB (point_chunks {stored.point_chunks_mib:,.0f},"
        f" rollups {stored.rollups_mib:,.0f})"
    )
    print(
        f"load: {load.requests:,} requests built in {load.build_s:.1f} s; sent in"
        f" {load.send_s:.1f} s ({load.sent_per_s:,.0f} points/s acknowledged), all stored after"
        f" {load.stored_s:.1f} s ({load.stored_per_s:,.0f} points/s); {load.retries} retries;"
        f" SIGTERM drain {load.drain_s:.1f} s"
    )
    for name, value in report.ranges.items():
        print(f"{name}: {value}")
    print()
    header = (
        f"{'':5}{'query':35}{'p50':>8}{'p95':>8}{'max':>8}{'ser.SQL':>9}{'dataSQL':>9}"
        f"{'python':>8}{'rows':>9}  {'target':>12} {'':4}  result"
    )
    print(header)
    print("-" * len(header))
    for q in report.queries:
        target = "-" if q["target_ms"] is None else f"p95<{q['target_ms']:.0f}ms"
        print(
            f"{q['key']:5}{q['description']:35}{q['p50_ms']:8.1f}{q['p95_ms']:8.1f}"
            f"{q['max_ms']:8.1f}{q['series_sql_p50_ms']:9.1f}{q['data_sql_p50_ms']:9.1f}"
            f"{q['python_p50_ms']:8.1f}{q['rows_fetched']:9,}  {target:>12} {q['verdict']:>4}"
            f"  {q['result']}"
        )
    print(
        "\nms; ser.SQL/dataSQL/python are medians of the series lookup fetch, the data fetch"
        " and the rest of the call; rows = rows fetched by the last round. Lognormal values:"
        f" p95 {math.exp(MU + SIGMA * 1.6449):.1f}, p99 {math.exp(MU + SIGMA * 2.3263):.1f}."
    )
    for q in report.queries:
        for plan in q["plans"]:
            print(f"\n[{q['key']}] EXPLAIN (ANALYZE, BUFFERS), last round:\n{plan}")


def run(args: argparse.Namespace, workdir: Path, dsn: str) -> Report:
    started = time.monotonic()
    data = plan_data_set(args, time.time_ns())
    requests = build_requests(data, args.points_per_request, args.seed)
    build_s = time.monotonic() - started
    total = sum(r.points for r in requests)
    print(
        f"built {len(requests):,} requests, {total:,} points,"
        f" {sum(len(r.body) for r in requests) / total:.0f} bytes/point, in {build_s:.1f} s",
        file=sys.stderr,
    )
    load = load_data(args, workdir, dsn, data, requests)
    load.build_s = build_s
    del requests
    print(
        f"loaded in {load.send_s:.1f} s ({load.sent_per_s:,.0f} points/s), stored after"
        f" {load.stored_s:.1f} s",
        file=sys.stderr,
    )
    stored, ranges, figures = asyncio.run(run_queries(dsn, data, args))
    if stored.points != load.points_sent:
        raise RuntimeError(f"stored {stored.points:,} points, sent {load.points_sent:,}")

    def show(span: TimeRange) -> str:
        step = "" if span.step is None else f", step {int(span.step.total_seconds())} s"
        return f"{span.start:%Y-%m-%d %H:%M} .. {span.end:%Y-%m-%d %H:%M} UTC{step}"

    report = Report(
        series=data.series,
        points_per_series=data.points_per_series,
        interval_s=data.interval_s,
        hot_series=len(data.hot),
        load={
            **asdict(load),
            "sent_per_s": load.sent_per_s,
            "stored_per_s": load.stored_per_s,
        },
        stored=asdict(stored),
        ranges={
            "queried at": f"{ranges.now:%Y-%m-%d %H:%M:%S} UTC",
            "dense data": f"{_dt(data.dense_start_ns):%Y-%m-%d %H:%M:%S} .. "
            f"{_dt(data.dense_end_ns):%H:%M:%S} UTC",
            "a, b (last dense hour)": show(ranges.last_hour),
            "c (24 h)": show(ranges.day)
            + f"; {ranges.day_hours_from_hour_rows} hours from hour rows, the rest from minutes",
            "d (one hour)": show(ranges.group_hour)
            + f"; {ranges.group_hour_coverage:.0%} of it inside the dense data",
        },
        queries=[asdict(f) for f in figures],
    )
    if args.json:
        print(json.dumps(asdict(report), indent=2))
    else:
        print_table(report, load, stored)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=10_000)
    parser.add_argument("--points-per-series", type=int, default=1000)
    parser.add_argument("--interval", type=int, default=10, help="seconds between dense points")
    parser.add_argument("--hot", type=int, default=10, help="series with 24 h of history")
    parser.add_argument("--history-interval", type=int, default=15, help="seconds, history")
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--variant-rounds", type=int, default=10, help="rounds of d-1m")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--points-per-request", type=int, default=1000)
    parser.add_argument("--senders", type=int, default=8, help="concurrent gRPC streams")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--tidegate", help="tidegate executable (default: beside python)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory and log")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    parser.add_argument(
        "--explain", action="store_true", help="also EXPLAIN ANALYZE each query's statements"
    )
    args = parser.parse_args()
    if args.series <= 0 or args.points_per_series <= 0 or args.rounds <= 0:
        parser.error("--series, --points-per-series and --rounds must be positive")

    # Embedded PostgreSQL runs as another user when we are root: its parent must be traversable.
    workdir = Path(tempfile.mkdtemp(prefix="tidegate-bench-query-", dir="/tmp"))
    os.chmod(workdir, 0o755)
    server: Any = None
    try:
        from tidegate.database import start_embedded_server

        server = start_embedded_server(workdir / "pg", keep_data=False)
        run(args, workdir, server.get_uri())
    finally:
        if server is not None:
            server.cleanup()
        if args.keep:
            print(f"work directory kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
