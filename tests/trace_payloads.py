"""Trace payloads for tests: spans and OTLP ``ExportTraceServiceRequest`` bytes.

Spans start now and last 1 ms, so they fall in the daemon's current day partition and a
search of the last hour finds them.
"""

from __future__ import annotations

import time

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as ts
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2


def span(trace_id: bytes, span_id: int, name: str, parent: int | None = None) -> trace_pb2.Span:
    """A 1 ms span starting now; ``span_id`` and ``parent`` are small integers."""
    start = time.time_ns()
    return trace_pb2.Span(
        trace_id=trace_id,
        span_id=span_id.to_bytes(8, "big"),
        parent_span_id=b"" if parent is None else parent.to_bytes(8, "big"),
        name=name,
        start_time_unix_nano=start,
        end_time_unix_nano=start + 1_000_000,
    )


def trace_request(service: str, spans: list[trace_pb2.Span]) -> bytes:
    """An Export request of ``spans`` under one resource whose ``service.name`` is ``service``."""
    request = ts.ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.append(
        common_pb2.KeyValue(key="service.name", value=common_pb2.AnyValue(string_value=service))
    )
    resource_spans.scope_spans.add().spans.extend(spans)
    return request.SerializeToString()
