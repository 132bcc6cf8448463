"""`tidegate query` as users run it: known answers from data the OpenTelemetry SDK exported,
the output formats, and bad queries refused with exit code 2 before anything runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource

from tests import payloads
from tests.conftest import RunningDaemon, make_config

TIDEGATE = [sys.executable, "-m", "tidegate.cli"]
BOUNDS = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0]
NS = 1_000_000_000


def tidegate_query(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TIDEGATE, "query", *args], capture_output=True, text=True, timeout=120, check=False
    )


def json_values(dsn: str, selector: str, agg: str, *extra: str) -> list[Any]:
    result = tidegate_query(
        selector, "--agg", agg, "--start=-10m", "--end=+5m", "--format", "json",
        "--dsn", dsn, *extra,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    return [[value for _, value in s["points"] if value is not None] for s in document["series"]]


@pytest.fixture
def sdk_data(database_dsn: str, tmp_path: Path) -> str:
    """Values 1..100 recorded into a histogram, and 2, 4, .., 100 observed as 50 gauge series,
    exported once by the SDK; the daemon is stopped, which writes its open windows."""
    daemon = RunningDaemon(make_config(database_dsn, tmp_path))
    try:
        exporter = OTLPMetricExporter(endpoint=daemon.grpc_target, insecure=True)
        reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
        provider = MeterProvider(
            resource=Resource.create({"service.name": "checkout"}),
            metric_readers=[reader],
            views=[
                View(
                    instrument_name="latency",
                    aggregation=ExplicitBucketHistogramAggregation(BOUNDS),
                )
            ],
        )
        meter = provider.get_meter("known.answers")
        latency = meter.create_histogram("latency", unit="ms")
        for value in range(1, 101):
            latency.record(value, {"route": "/pay"})

        def observe(_: CallbackOptions) -> list[Observation]:
            return [Observation(float(v), {"worker": str(v)}) for v in range(2, 101, 2)]

        meter.create_observable_gauge("queue.size", callbacks=[observe])
        provider.shutdown()  # exports once, then stops the reader
    finally:
        daemon.stop()
    return database_dsn


def test_known_quantiles_of_sdk_gauges_through_the_cli(sdk_data: str) -> None:
    # 50 series of one value each, merged: a digest of at most 62 values is exact, and
    # quantile(q) is the order statistic x[floor(q * n)] of 2, 4, .., 100.
    assert json_values(sdk_data, "queue.size", "quantile(0.5)") == [[52.0]]
    assert json_values(sdk_data, "queue.size", "p90") == [[92.0]]
    assert json_values(sdk_data, "queue.size", "quantile", "--q", "0.99") == [[100.0]]
    assert json_values(sdk_data, "queue.size", "count") == [[50.0]]
    assert json_values(sdk_data, "queue.size", "sum") == [[2550.0]]
    assert json_values(sdk_data, "queue.size", "min") == [[2.0]]
    assert json_values(sdk_data, "queue.size", "max") == [[100.0]]
    grouped = json_values(sdk_data, 'queue.size{worker=~"[2-8]"}', "sum", "--by", "worker")
    assert grouped == [[2.0], [4.0], [6.0], [8.0]]


def test_known_quantiles_of_an_sdk_histogram_through_the_cli(sdk_data: str) -> None:
    # Ten values per bucket of width 10: interpolation inside a bucket is exact.
    selector = 'latency{route="/pay", service.name="checkout"}'
    assert json_values(sdk_data, selector, "p50") == [[50.0]]
    assert json_values(sdk_data, selector, "p90") == [[90.0]]
    assert json_values(sdk_data, selector, "p99") == [[99.0]]
    assert json_values(sdk_data, selector, "count") == [[100.0]]
    assert json_values(sdk_data, selector, "sum") == [[5050.0]]


def test_raw_points_as_table_with_sparkline_and_as_csv(daemon: RunningDaemon) -> None:
    base = (payloads.now_ns() // NS - 600) * NS
    points = [payloads.number_point(float(v), time=base + i * NS) for i, v in enumerate([1, 5, 9])]
    request = payloads.request([payloads.gauge("spark", points)])
    payloads.export(daemon.grpc_target, request.SerializeToString())
    daemon.flush()
    common = ["spark", "--raw", "--start=-15m", "--dsn", daemon.daemon.dsn]
    table = tidegate_query(*common)
    assert table.returncode == 0, table.stderr
    assert "▁▅█" in table.stdout
    assert "min 1 max 9" in table.stdout
    csv_out = tidegate_query(*common, "--format", "csv")
    assert csv_out.returncode == 0, csv_out.stderr
    lines = csv_out.stdout.splitlines()
    assert lines[0] == "time,service.name,value"
    assert [line.rsplit(",", 1)[1] for line in lines[1:]] == ["1.0", "5.0", "9.0"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["up", "--agg", "median"], "unknown aggregation 'median'"),
        (["up", "--agg", "quantile"], "quantile needs q"),
        (["up", "--agg", "quantile(1.5)"], "within [0, 1]"),
        (['up{job=~"(unclosed"}', "--agg", "sum"], "job"),
        (["up", "--start", "now", "--end=-1h"], "start"),
        (["up", "--step", "0s"], "step"),
        (["up", "--start", "yesterday"], "yesterday"),
        (["up{", "--agg", "sum"], "column"),
        (["up", "--format", "xml"], "unknown format 'xml'"),
    ],
)
def test_bad_queries_exit_2_before_connecting(args: list[str], message: str) -> None:
    # The DSN points nowhere: reaching for it would exit 1 with a connection error instead.
    result = tidegate_query(*args, "--dsn", "postgresql://127.0.0.1:1/none")
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert result.stdout == ""
