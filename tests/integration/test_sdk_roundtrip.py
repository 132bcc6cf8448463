"""The OpenTelemetry Python SDK exports real metrics over OTLP/gRPC; SQL reads back exact values."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from tests.conftest import RunningDaemon

BOUNDS = [10.0, 100.0, 1000.0]


@pytest.fixture
def provider(daemon: RunningDaemon) -> Iterator[MeterProvider]:
    exporter = OTLPMetricExporter(endpoint=daemon.grpc_target, insecure=True)
    # A long interval: the test exports explicitly with force_flush.
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    resource = Resource.create({"service.name": "checkout", "deployment.environment": "test"})
    meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
    yield meter_provider
    meter_provider.shutdown()


def series_row(daemon: RunningDaemon, name: str, **attrs: str) -> dict[str, object]:
    rows = daemon.query(
        "SELECT * FROM series WHERE metric_name = $1 AND attributes @> $2::jsonb",
        name,
        json.dumps(attrs),
    )
    assert len(rows) == 1, f"expected one series named {name}, found {len(rows)}"
    return dict(rows[0])


def test_counter_updown_gauge_histogram_arrive_exactly(
    daemon: RunningDaemon, provider: MeterProvider
) -> None:
    meter = provider.get_meter("shop.orders", "1.2.3")
    orders = meter.create_counter("orders", unit="{order}", description="orders placed")
    orders.add(5, {"route": "/buy", "region": "eu"})
    orders.add(7, {"route": "/buy", "region": "eu"})
    orders.add(1, {"route": "/sell", "region": "us"})
    queue = meter.create_up_down_counter("queue.depth")
    queue.add(10)
    queue.add(-3)
    temperature = meter.create_gauge("room.temperature", unit="Cel")
    temperature.set(21.5, {"room": "a"})
    temperature.set(19.25, {"room": "a"})

    def observe(_: CallbackOptions) -> list[Observation]:
        return [Observation(0.75, {"cpu": "0"}), Observation(0.25, {"cpu": "1"})]

    meter.create_observable_gauge("cpu.utilization", callbacks=[observe], unit="1")
    latency = meter.create_histogram(
        "http.server.duration", unit="ms", explicit_bucket_boundaries_advisory=BOUNDS
    )
    for value in (1, 3, 7, 30, 30, 600, 2000):
        latency.record(value, {"http.route": "/buy"})

    assert provider.force_flush(10_000)
    daemon.flush()

    orders_series = series_row(daemon, "orders", route="/buy")
    assert orders_series["metric_type"] == "sum"
    assert orders_series["temporality"] == "cumulative"
    assert orders_series["monotonic"] is True
    assert orders_series["unit"] == "{order}"
    assert orders_series["description"] == "orders placed"
    assert json.loads(str(orders_series["attributes"])) == {"route": "/buy", "region": "eu"}
    resource = json.loads(str(orders_series["resource"]))
    assert resource["service.name"] == "checkout"
    assert resource["deployment.environment"] == "test"
    scope = json.loads(str(orders_series["scope"]))
    assert scope["name"] == "shop.orders"
    assert scope["version"] == "1.2.3"

    by_route = daemon.query(
        """SELECT s.attributes->>'route' AS route, s.attributes->>'region' AS region, p.value
           FROM metric_points p JOIN series s ON s.id = p.series_id
           WHERE s.metric_name = 'orders' ORDER BY route"""
    )
    assert [(r["route"], r["region"], r["value"]) for r in by_route] == [
        ("/buy", "eu", 12.0),
        ("/sell", "us", 1.0),
    ]
    starts = daemon.query(
        """SELECT p.start_time, p.time FROM metric_sum_points p
           JOIN series s ON s.id = p.series_id WHERE s.metric_name = 'orders'"""
    )
    assert len(starts) == 2
    assert all(r["start_time"] is not None and r["start_time"] <= r["time"] for r in starts)

    queue_series = series_row(daemon, "queue.depth")
    assert queue_series["monotonic"] is False
    assert (
        daemon.query("SELECT value FROM metric_points WHERE series_id = $1", queue_series["id"])[0][
            "value"
        ]
        == 7.0
    )

    temperature_series = series_row(daemon, "room.temperature")
    assert temperature_series["metric_type"] == "gauge"
    assert (
        daemon.query(
            "SELECT value FROM metric_points WHERE series_id = $1", temperature_series["id"]
        )[0]["value"]
        == 19.25
    )

    cpu = daemon.query(
        """SELECT s.attributes->>'cpu' AS cpu, p.value FROM metric_points p
           JOIN series s ON s.id = p.series_id WHERE s.metric_name = 'cpu.utilization'
           ORDER BY cpu"""
    )
    assert [(r["cpu"], r["value"]) for r in cpu] == [("0", 0.75), ("1", 0.25)]

    hist = daemon.query(
        """SELECT h.* FROM histogram_points h JOIN series s ON s.id = h.series_id
           WHERE s.metric_name = 'http.server.duration'"""
    )
    assert len(hist) == 1
    row = hist[0]
    assert row["count"] == 7
    assert row["sum"] == 2671.0
    assert row["min"] == 1.0
    assert row["max"] == 2000.0
    assert list(row["bounds"]) == BOUNDS
    assert list(row["bucket_counts"]) == [3, 2, 1, 1]
    assert row["start_time"] is not None

    stored = daemon.query("SELECT count(*) AS n FROM series")[0]["n"]
    assert stored == 7  # orders x2, queue, temperature, cpu x2, histogram


def test_second_export_extends_the_same_series(
    daemon: RunningDaemon, provider: MeterProvider
) -> None:
    counter = provider.get_meter("m").create_counter("requests")
    counter.add(2, {"code": "200"})
    assert provider.force_flush(10_000)
    counter.add(3, {"code": "200"})
    assert provider.force_flush(10_000)
    daemon.flush()
    rows = daemon.query(
        """SELECT p.value FROM metric_points p JOIN series s ON s.id = p.series_id
           WHERE s.metric_name = 'requests' ORDER BY p.time"""
    )
    assert [r["value"] for r in rows] == [2.0, 5.0]
    assert daemon.query("SELECT count(*) AS n FROM series")[0]["n"] == 1
