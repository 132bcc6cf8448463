"""The one builder of benchmark payloads: pre-serialized OTLP ``ExportMetricsServiceRequest`` bytes.

Scenario (the "mixed 10k-series" workload): ``series`` series, ``points_per_request`` points per
request, one point per series per request, 5 string attributes per point, one resource per
request. Series ``k`` has its kind from ``k % 5`` (gauge, gauge, sum, sum, histogram), so every
request is 40 % Gauge, 40 % cumulative monotonic Sum and 20 % explicit-bounds Histogram (10
buckets) by point count. Request ``i`` covers the ``points_per_request`` series after
``i * points_per_request`` (wrapping), so consecutive requests rotate through every series.

Timestamps: request ``i`` is at ``now - (n_requests - i) * step``, i.e. the pool spans
``n_requests * step`` and ends at build time. Nothing is in the future, and a pool built just
before a run stays within the last few minutes of wall time while it is replayed.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from dataclasses import dataclass

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality, Metric

KINDS: tuple[str, ...] = ("gauge", "gauge", "sum", "sum", "histogram")
METRICS_PER_KIND = 10
# 9 bounds -> 10 buckets, the shape of a typical latency histogram in milliseconds.
HISTOGRAM_BOUNDS: tuple[float, ...] = (5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0)
RESOURCE_ATTRIBUTES: tuple[tuple[str, str], ...] = (
    ("service.name", "tidegate-bench"),
    ("service.version", "1.0.0"),
    ("host.name", "bench-host-01"),
    ("deployment.environment", "bench"),
)
REGIONS: tuple[str, ...] = ("eu-west-1", "us-east-1", "ap-south-1", "us-west-2")
_CUMULATIVE = AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE


@dataclass(frozen=True, slots=True)
class Payload:
    """One serialized Export request and the number of data points it carries."""

    body: bytes
    points: int


def metric_name(series_index: int) -> str:
    """Name of the metric series ``series_index`` belongs to."""
    kind = KINDS[series_index % len(KINDS)]
    return f"bench.{kind}.m{(series_index // len(KINDS)) % METRICS_PER_KIND}"


def _string_kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def series_attributes(series_index: int) -> list[KeyValue]:
    """The 5 string attributes of one series; ``sk`` makes every series unique."""
    k = series_index
    return [
        _string_kv("host", f"h-{k % 64:02d}"),
        _string_kv("region", REGIONS[k % len(REGIONS)]),
        _string_kv("pod", f"pod-{k % 997:03d}"),
        _string_kv("route", f"/r/{(k // 7) % 50}"),
        _string_kv("sk", f"s{k:05d}"),
    ]


def build_requests(
    n_requests: int,
    points_per_request: int = 1000,
    series: int = 10_000,
    seed: int = 0,
    step_ns: int = 5_000_000,
    now_ns: int | None = None,
) -> list[Payload]:
    """Build ``n_requests`` serialized requests of the mixed 10k-series scenario.

    ``step_ns`` is the time between consecutive requests (5 ms by default); ``now_ns`` pins the
    end of the pool (defaults to the wall clock). Deterministic for a given ``seed`` and
    ``now_ns``.
    """
    if n_requests <= 0 or points_per_request <= 0 or series <= 0:
        raise ValueError("n_requests, points_per_request and series must be positive")
    rng = random.Random(seed)
    end_ns = time.time_ns() if now_ns is None else now_ns
    first_ns = end_ns - n_requests * step_ns
    # Cumulative Sums and Histograms all started one hour before the pool.
    start_ns = first_ns - 3600 * 10**9
    # Building KeyValue messages once per series, not once per point, keeps a 500-request pool
    # (half a million points) to a few seconds of build time.
    attributes: dict[int, list[KeyValue]] = {}
    weights = [[rng.randint(1, 9) for _ in range(len(HISTOGRAM_BOUNDS) + 1)] for _ in range(97)]
    payloads: list[Payload] = []
    for i in range(n_requests):
        time_ns = first_ns + i * step_ns
        by_name: dict[str, list[int]] = defaultdict(list)
        for j in range(points_per_request):
            k = (i * points_per_request + j) % series
            by_name[metric_name(k)].append(k)
        request = ExportMetricsServiceRequest()
        resource_metrics = request.resource_metrics.add()
        resource_metrics.resource.attributes.extend(
            _string_kv(key, value) for key, value in RESOURCE_ATTRIBUTES
        )
        scope_metrics = resource_metrics.scope_metrics.add()
        scope_metrics.scope.name = "tidegate.bench"
        scope_metrics.scope.version = "1"
        for name, members in by_name.items():
            metric = scope_metrics.metrics.add(name=name)
            kind = KINDS[members[0] % len(KINDS)]
            for k in members:
                if k not in attributes:
                    attributes[k] = series_attributes(k)
            _fill_metric(metric, kind, members, attributes, i, time_ns, start_ns, rng, weights)
        payloads.append(Payload(request.SerializeToString(), points_per_request))
    return payloads


def _fill_metric(
    metric: Metric,
    kind: str,
    members: list[int],
    attributes: dict[int, list[KeyValue]],
    round_index: int,
    time_ns: int,
    start_ns: int,
    rng: random.Random,
    weights: list[list[int]],
) -> None:
    # round_index grows by one per request, so cumulative values only ever increase in a pool.
    if kind == "gauge":
        metric.unit = "1"
        for k in members:
            point = metric.gauge.data_points.add(time_unix_nano=time_ns, as_double=rng.random())
            point.attributes.extend(attributes[k])
    elif kind == "sum":
        metric.unit = "By"
        metric.sum.aggregation_temporality = _CUMULATIVE
        metric.sum.is_monotonic = True
        for k in members:
            point = metric.sum.data_points.add(
                time_unix_nano=time_ns,
                start_time_unix_nano=start_ns,
                as_double=float(k % 1000 + 10 * round_index),
            )
            point.attributes.extend(attributes[k])
    else:
        metric.unit = "ms"
        metric.histogram.aggregation_temporality = _CUMULATIVE
        for k in members:
            counts = [(round_index + 1) * w for w in weights[k % len(weights)]]
            total = sum(counts)
            histogram_point = metric.histogram.data_points.add(
                time_unix_nano=time_ns,
                start_time_unix_nano=start_ns,
                count=total,
                sum=total * 42.5,
                min=0.5,
                max=4000.0,
                bucket_counts=counts,
                explicit_bounds=HISTOGRAM_BOUNDS,
            )
            histogram_point.attributes.extend(attributes[k])


if __name__ == "__main__":
    # Mixed 10k-series scenario: print the wire size per point and the build rate.
    started = time.perf_counter()
    pool = build_requests(200)
    elapsed = time.perf_counter() - started
    points = sum(p.points for p in pool)
    size = sum(len(p.body) for p in pool)
    print(
        f"{len(pool)} requests, {points} points, {size / points:.1f} bytes/point, "
        f"{points / elapsed:,.0f} points/s built"
    )
