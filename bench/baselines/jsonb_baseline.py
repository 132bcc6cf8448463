"""The design tidegate replaces: decode in Python, one JSONB row per point, flushed every second.

Scenario: serves the same OTLP ``MetricsService/Export`` method as tidegate. Each request is
decoded with Python protobuf, every point is walked into a Python dict, buffered in memory and
acknowledged; once a second the buffer is written with asyncpg ``executemany`` INSERT into
``baseline_points (time, name, value, labels jsonb)`` with a btree on (name, time). A histogram
point is one row whose value is its sum and whose labels carry the count, bounds and buckets.
SIGTERM stops the server, flushes everything buffered and exits 0.

    python -m bench.baselines.jsonb_baseline --dsn postgresql://... --listen 127.0.0.1:4318
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import grpc
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

SCHEMA = """
CREATE TABLE IF NOT EXISTS baseline_points (
    time    timestamptz NOT NULL,
    name    text NOT NULL,
    value   double precision,
    labels  jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS baseline_points_name_time ON baseline_points (name, time);
"""
INSERT = "INSERT INTO baseline_points (time, name, value, labels) VALUES ($1, $2, $3, $4)"
SERVICE = "opentelemetry.proto.collector.metrics.v1.MetricsService"
Row = tuple[datetime, str, float, str]
log = logging.getLogger("jsonb_baseline")


def _any_value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return (
        getattr(value, kind)
        if kind in {"string_value", "bool_value", "int_value", "double_value"}
        else str(value)
    )


def _labels(attributes: Iterable[KeyValue]) -> dict[str, Any]:
    return {item.key: _any_value(item.value) for item in attributes}


def _time(unix_nano: int) -> datetime:
    return datetime.fromtimestamp(unix_nano / 1e9, tz=UTC)


def request_rows(request: ExportMetricsServiceRequest) -> list[Row]:
    """Walk every point of ``request`` into a row, the way the replaced design did."""
    rows: list[Row] = []
    for resource_metrics in request.resource_metrics:
        resource = _labels(resource_metrics.resource.attributes)
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                kind = metric.WhichOneof("data")
                if kind in {"gauge", "sum"}:
                    for point in getattr(metric, kind).data_points:
                        value = (
                            point.as_double
                            if point.WhichOneof("value") == "as_double"
                            else float(point.as_int)
                        )
                        labels = {**resource, **_labels(point.attributes)}
                        rows.append(
                            (_time(point.time_unix_nano), metric.name, value, json.dumps(labels))
                        )
                elif kind == "histogram":
                    for point in metric.histogram.data_points:
                        labels = {
                            **resource,
                            **_labels(point.attributes),
                            "count": point.count,
                            "bounds": list(point.explicit_bounds),
                            "buckets": list(point.bucket_counts),
                        }
                        rows.append(
                            (
                                _time(point.time_unix_nano),
                                metric.name,
                                point.sum,
                                json.dumps(labels),
                            )
                        )
                # The replaced design stored no other types; they are dropped, as it did.
    return rows


class JsonbBaseline:
    """Export handler plus the once-a-second flusher."""

    def __init__(self, pool: asyncpg.Pool, max_buffered_points: int) -> None:
        self._pool = pool
        self._max_buffered = max_buffered_points
        self._buffer: list[Row] = []
        self.flushed = 0

    async def export(self, body: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        request = ExportMetricsServiceRequest.FromString(body)
        # The replaced design's buffer was unbounded; the cap keeps a run from eating the
        # machine's memory and turns into the retryable status an OTLP client expects.
        if self._max_buffered and len(self._buffer) >= self._max_buffered:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "buffer full, retry later")
        self._buffer.extend(request_rows(request))
        return ExportMetricsServiceResponse().SerializeToString()

    async def flush(self) -> None:
        rows, self._buffer = self._buffer, []
        if rows:
            started = time.perf_counter()
            async with self._pool.acquire() as connection:
                await connection.executemany(INSERT, rows)
            self.flushed += len(rows)
            log.info("Flushed %d metrics in %.2f s", len(rows), time.perf_counter() - started)

    async def flush_forever(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            started = time.monotonic()
            await self.flush()
            # Flush every second, or right away when the previous flush took longer.
            await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - started)))


async def serve(dsn: str, listen: str, max_buffered_points: int) -> None:
    """Serve until SIGTERM or SIGINT, then flush everything acknowledged and return."""
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    try:
        await pool.execute(SCHEMA)
        baseline = JsonbBaseline(pool, max_buffered_points)
        server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)])
        handler = grpc.unary_unary_rpc_method_handler(baseline.export)
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, {"Export": handler}),)
        )
        server.add_insecure_port(listen)
        await server.start()
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stopping.set)
        log.info("listening on %s", listen)
        flusher = asyncio.create_task(baseline.flush_forever(stopping))
        await stopping.wait()
        await server.stop(grace=5)
        await flusher
        await baseline.flush()
        log.info("stopped after flushing %d metrics in total", baseline.flushed)
    finally:
        await pool.close()


# Scenario: the replaced design (Python walk, JSONB row per point), as a load target.
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--listen", default="127.0.0.1:4318")
    parser.add_argument(
        "--max-buffered-points",
        type=int,
        default=1_000_000,
        help="RESOURCE_EXHAUSTED above this many buffered points; 0: unbounded",
    )
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
    )
    asyncio.run(serve(args.dsn, args.listen, args.max_buffered_points))


if __name__ == "__main__":
    main()
