"""A full spool: PostgreSQL is stopped, so nothing drains, and the spool (``[spool]
max_bytes``, small) fills. Clients are refused quickly with UNAVAILABLE or RESOURCE_EXHAUSTED
carrying RetryInfo; the OpenTelemetry SDK's own exporter keeps retrying; once PostgreSQL is
back, everything acknowledged arrives once, the SDK's point too.

With the spool section off (the current daemon) the same refusals come from the in-memory
write queues, made small here (``ingest.max_buffered_points``, ``traces.max_buffered_spans``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import asyncpg
import pytest
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricExportResult
from opentelemetry.sdk.resources import Resource

from tests.faults.conftest import MakeScenario
from tests.faults.harness import (
    METRICS,
    SPOOL_DEFAULT,
    TRACES,
    OwnPostgres,
    Scenario,
    Workload,
    percentile,
)

pytestmark = pytest.mark.timeout(90)
MIB = 1024 * 1024
SDK_METRIC = "tg.sdk.requests"
SDK_VALUE = 42
SDK_TIMEOUT_SECONDS = 45.0  # covers its backoffs of 1, 2, 4 and 8 s
# The daemon asks for longer delays the longer its spool stays full, so clients that honour
# RetryInfo come back less and less often: p99 of these is about the slowest one.
REFUSALS_WANTED = 20
REFUSAL_P99_SECONDS = 0.1
SDK_LOGGER = "opentelemetry.exporter.otlp.proto.grpc.exporter"
FILLER_GEN = 100
FILLER = Workload(
    metric_generators=1, span_generators=0, points_per_batch=1, first_generator=FILLER_GEN
)
# Attributes that make the SDK's request larger than a filler request.
SDK_ATTRIBUTES = {f"sdk.attribute.{i}": "x" * 16 for i in range(8)}


class TransientErrors(logging.Handler):
    """Counts the SDK exporter's "Transient error ..., retrying" warnings."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen = threading.Event()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith(("Transient error", "Failed to export")):
            self.messages.append(f"{time.monotonic():.2f} {message}")
        if message.startswith("Transient error"):
            self.seen.set()


@pytest.fixture
def sdk_retries() -> Iterator[TransientErrors]:
    handler = TransientErrors()
    logger = logging.getLogger(SDK_LOGGER)
    # The SDK's logger drops a message that repeats within 20 s; the report lists every retry.
    repeats = [f for f in logger.filters if type(f).__name__ == "DuplicateFilter"]
    for kept_out in repeats:
        logger.removeFilter(kept_out)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        for kept_out in repeats:
            logger.addFilter(kept_out)


def test_full_spool_refuses_quickly_with_retry_info_and_loses_nothing(
    make_scenario: MakeScenario, own_postgres: OwnPostgres, sdk_retries: TransientErrors
) -> None:
    # Without the spool, small in-memory queues stand in for it.
    queues: dict[str, Any] = (
        {}
        if SPOOL_DEFAULT
        else {
            "ingest": {"max_buffered_points": 20_000, "flush_points": 10_000},
            "traces": {"max_buffered_spans": 2_000},
        }
    )
    scenario = make_scenario(
        own_postgres.dsn(),
        spool_max_bytes=2 * MIB,
        spool_segment_bytes=256 * 1024,
        # Short RetryInfo delays at first, so that the refusals come quickly.
        retry_after_seconds=0.1,
        **queues,
    )
    scenario.daemon.start()
    scenario.generator.start()
    scenario.generator.wait_acknowledged(METRICS, 1000)
    scenario.generator.wait_acknowledged(TRACES, 100)

    own_postgres.stop("fast")
    wait_for(lambda: len(scenario.ledger.refusals(METRICS)) >= REFUSALS_WANTED, 30, "refusals")
    # A spool refuses what does not fit; one-point requests fill what the batches left, so
    # that the SDK's (larger) request cannot fit either.
    scenario.add_generator(FILLER)
    wait_for(lambda: filler_refusals(scenario) >= 3, 30, "refusals of one-point requests")
    exporter, result, sdk = export_with_sdk(scenario.daemon.grpc_target)
    try:
        refused = sdk_retries.seen.wait(15)
        own_postgres.start()
        assert refused, f"the SDK exporter was never refused; {scenario.ledger.summary()}"
        sdk.join(SDK_TIMEOUT_SECONDS + 5)
    finally:
        exporter.shutdown()  # cuts short a retry still waiting
        sdk.join(10)
    scenario.run_load(1.0)
    report = scenario.finish()

    refusals = scenario.ledger.refusals()
    latencies = [a.latency for a in refusals]
    without_retry_info = [a for a in refusals if a.retry_delay is None]
    print(
        f"refusals {len(refusals)}, without RetryInfo {len(without_retry_info)}, latency p50 "
        f"{percentile(latencies, 50) * 1000:.1f} ms p99 {percentile(latencies, 99) * 1000:.1f} "
        f"ms; SDK result {result}; SDK retries {len(sdk_retries.messages)}:"
    )
    for message in sdk_retries.messages:
        print(f"  {message[:160]}")
    for slow in sorted(refusals, key=lambda a: a.latency)[-3:]:
        print(f"  slowest: {slow.signal} {slow.code.name} {slow.latency * 1000:.1f} ms")
    assert not without_retry_info, f"refusals without RetryInfo: {without_retry_info[:3]}"
    assert percentile(latencies, 99) < REFUSAL_P99_SECONDS
    assert result == [MetricExportResult.SUCCESS], f"the SDK export ended {result}"
    assert sdk_points(own_postgres.dsn()) == [float(SDK_VALUE)]
    report.assert_exactly_once()


def filler_refusals(scenario: Scenario) -> int:
    return sum(1 for a in scenario.ledger.refusals(METRICS) if a.generator >= FILLER_GEN)


def export_with_sdk(
    target: str,
) -> tuple[OTLPMetricExporter, list[MetricExportResult], threading.Thread]:
    """Start one export of a counter at 42 by the SDK's gRPC exporter, in a thread."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(
        metric_readers=[reader], resource=Resource.create({"service.name": "sdk"})
    )
    provider.get_meter("faults").create_counter(SDK_METRIC).add(SDK_VALUE, SDK_ATTRIBUTES)
    data = reader.get_metrics_data()
    provider.shutdown()
    assert data is not None
    exporter = OTLPMetricExporter(endpoint=target, insecure=True, timeout=SDK_TIMEOUT_SECONDS)
    result: list[MetricExportResult] = []

    def run() -> None:
        started = time.monotonic()
        result.append(exporter.export(data))
        print(f"SDK export from {started:.2f} to {time.monotonic():.2f}")

    thread = threading.Thread(target=run)
    thread.start()
    return exporter, result, thread


def sdk_points(dsn: str) -> list[float]:
    async def fetch() -> list[float]:
        conn = await asyncpg.connect(dsn)
        try:
            rows = await conn.fetch(
                """SELECT v FROM point_chunks AS c JOIN series AS s ON s.id = c.series_id
                   CROSS JOIN LATERAL unnest(c.point_values) AS v WHERE s.metric_name = $1""",
                SDK_METRIC,
            )
        finally:
            await conn.close()
        return [float(r["v"]) for r in rows]

    return asyncio.run(fetch())


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not enough {what} within {timeout} s"
        time.sleep(0.05)
