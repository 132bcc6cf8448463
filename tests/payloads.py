"""The one builder of OTLP metrics payloads for tests.

Tests describe points with these helpers and get ``ExportMetricsServiceRequest`` bytes (or the
message) built with the OpenTelemetry protobuf package, so no test carries copied literals.
Times default to "now", which is inside the daemon's accepted window.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as svc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2 as m
from opentelemetry.proto.resource.v1 import resource_pb2

EXPORT_METHOD = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
DELTA = m.AGGREGATION_TEMPORALITY_DELTA
CUMULATIVE = m.AGGREGATION_TEMPORALITY_CUMULATIVE

Attributes = Mapping[str, Any]
NO_ATTRIBUTES: Attributes = MappingProxyType({})
DEFAULT_RESOURCE: Attributes = MappingProxyType({"service.name": "test-service"})


def now_ns() -> int:
    return time.time_ns()


def any_value(value: Any) -> common_pb2.AnyValue:
    """Python value → AnyValue: str, bool, int, float, bytes, list, dict (kvlist)."""
    if isinstance(value, common_pb2.AnyValue):
        return value
    if isinstance(value, bool):
        return common_pb2.AnyValue(bool_value=value)
    if isinstance(value, int):
        return common_pb2.AnyValue(int_value=value)
    if isinstance(value, float):
        return common_pb2.AnyValue(double_value=value)
    if isinstance(value, bytes):
        return common_pb2.AnyValue(bytes_value=value)
    if isinstance(value, str):
        return common_pb2.AnyValue(string_value=value)
    if isinstance(value, list):
        return common_pb2.AnyValue(
            array_value=common_pb2.ArrayValue(values=[any_value(v) for v in value])
        )
    if isinstance(value, dict):
        return common_pb2.AnyValue(kvlist_value=common_pb2.KeyValueList(values=attributes(value)))
    raise TypeError(f"no AnyValue for {type(value).__name__}")


def attributes(attrs: Attributes | Iterable[tuple[str, Any]]) -> list[common_pb2.KeyValue]:
    pairs = attrs.items() if isinstance(attrs, Mapping) else attrs
    return [common_pb2.KeyValue(key=k, value=any_value(v)) for k, v in pairs]


def number_point(
    value: float | int | None,
    attrs: Attributes = NO_ATTRIBUTES,
    *,
    time: int | None = None,
    start: int = 0,
) -> m.NumberDataPoint:
    point = m.NumberDataPoint(
        attributes=attributes(attrs),
        time_unix_nano=now_ns() if time is None else time,
        start_time_unix_nano=start,
    )
    if isinstance(value, int) and not isinstance(value, bool):
        point.as_int = value
    elif value is not None:
        point.as_double = value
    return point


def gauge(name: str, points: Sequence[m.NumberDataPoint], unit: str = "") -> m.Metric:
    return m.Metric(name=name, unit=unit, gauge=m.Gauge(data_points=points))


def sum_metric(
    name: str,
    points: Sequence[m.NumberDataPoint],
    *,
    temporality: int = CUMULATIVE,
    monotonic: bool = True,
    unit: str = "",
) -> m.Metric:
    return m.Metric(
        name=name,
        unit=unit,
        sum=m.Sum(data_points=points, aggregation_temporality=temporality, is_monotonic=monotonic),
    )


def histogram_point(
    bounds: Sequence[float],
    counts: Sequence[int],
    total: float,
    attrs: Attributes = NO_ATTRIBUTES,
    *,
    time: int | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
) -> m.HistogramDataPoint:
    point = m.HistogramDataPoint(
        attributes=attributes(attrs),
        time_unix_nano=now_ns() if time is None else time,
        count=sum(counts),
        sum=total,
        explicit_bounds=bounds,
        bucket_counts=counts,
    )
    if minimum is not None:
        point.min = minimum
    if maximum is not None:
        point.max = maximum
    return point


def histogram(
    name: str, points: Sequence[m.HistogramDataPoint], temporality: int = CUMULATIVE
) -> m.Metric:
    return m.Metric(
        name=name,
        histogram=m.Histogram(data_points=points, aggregation_temporality=temporality),
    )


def exp_histogram(
    name: str, points: Sequence[m.ExponentialHistogramDataPoint], temporality: int = DELTA
) -> m.Metric:
    return m.Metric(
        name=name,
        exponential_histogram=m.ExponentialHistogram(
            data_points=points, aggregation_temporality=temporality
        ),
    )


def summary(name: str, points: Sequence[m.SummaryDataPoint]) -> m.Metric:
    return m.Metric(name=name, summary=m.Summary(data_points=points))


def request(
    metrics: Sequence[m.Metric],
    resource: Attributes = DEFAULT_RESOURCE,
    scope: str = "tests",
) -> svc.ExportMetricsServiceRequest:
    return svc.ExportMetricsServiceRequest(
        resource_metrics=[
            m.ResourceMetrics(
                resource=resource_pb2.Resource(attributes=attributes(resource)),
                scope_metrics=[
                    m.ScopeMetrics(
                        scope=common_pb2.InstrumentationScope(name=scope), metrics=metrics
                    )
                ],
            )
        ]
    )


def export(
    target: str,
    payload: bytes,
    *,
    compression: grpc.Compression | None = None,
    max_message_bytes: int = 64 * 1024 * 1024,
) -> svc.ExportMetricsServiceResponse:
    """Send raw request bytes to ``target``; raise grpc.RpcError on a non-OK status."""
    options = [("grpc.max_send_message_length", max_message_bytes)]
    with grpc.insecure_channel(target, options=options, compression=compression) as channel:
        call = channel.unary_unary(EXPORT_METHOD)
        reply = call(payload, timeout=30)
    return svc.ExportMetricsServiceResponse.FromString(reply)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field, encoded by hand."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def nested_kvlist_request(depth: int) -> bytes:
    """A request whose one gauge point has an attribute nested ``depth`` kvlists deep.

    Encoded by hand: protobuf libraries refuse to build messages nested this deep.
    """
    value = _field(1, b"leaf")  # AnyValue.string_value
    for _ in range(depth):
        key_value = _field(1, b"k") + _field(2, value)  # KeyValue{key, value}
        value = _field(6, _field(1, key_value))  # AnyValue.kvlist_value{values}
    point = (
        _field(7, _field(1, b"nested") + _field(2, value))  # NumberDataPoint.attributes
        + bytes([3 << 3 | 1])
        + now_ns().to_bytes(8, "little")  # time_unix_nano (fixed64)
        + bytes([4 << 3 | 1])
        + struct.pack("<d", 1.0)  # as_double (fixed64)
    )
    metric = _field(1, b"deep") + _field(5, _field(1, point))  # Metric{name, gauge}
    return _field(1, _field(2, _field(2, metric)))  # Request{ResourceMetrics{ScopeMetrics}}
