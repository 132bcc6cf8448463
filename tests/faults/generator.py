"""Load generator: OTLP metrics and spans from threads, each item stamped, every outcome in a
:class:`~tests.faults.ledger.Ledger`.

Retries follow the OTLP specification: UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED, CANCELLED,
OUT_OF_RANGE and DATA_LOSS are retried, RESOURCE_EXHAUSTED only when the status carries
``google.rpc.RetryInfo``; the same bytes are sent again after RetryInfo's delay, else after an
exponential backoff with jitter, until a per-batch deadline. A daemon that is down answers
UNAVAILABLE (grpc reports connection failures so).

Stamps. Metrics: gauge ``tg.fault.points`` with attributes ``{"gen": g, "stream": seq % 8}``,
value ``float(seq)`` and time ``base + seq * 10 µs`` (unique per series and sequence, minutes in
the past so their rollup windows are already closed). Spans: attributes ``tg.gen``,
``tg.batch``, ``tg.seq``; trace and span ids derived from (gen, batch) and (gen, seq).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as msvc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as tsvc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from tests import payloads as p
from tests.faults.ledger import METRICS, TRACES, Answer, BatchRecord, Ledger, Outcome

METRIC_NAME = "tg.fault.points"
STREAMS = 8
SERVICE = "tidegate-faults"
TRACES_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
POINT_STEP_NS = 10_000
SPANS_PER_TRACE = 5
RETRYABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.DATA_LOSS,
    }
)
# Reconnect quickly once a restarted daemon listens again (grpc's default waits up to 120 s).
CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
    ("grpc.enable_retries", 0),
]


def metrics_request(gen: int, first_seq: int, count: int, base_ns: int) -> bytes:
    points = [
        p.number_point(
            float(seq), {"gen": gen, "stream": seq % STREAMS}, time=base_ns + seq * POINT_STEP_NS
        )
        for seq in range(first_seq, first_seq + count)
    ]
    return p.request(
        [p.gauge(METRIC_NAME, points)], resource={"service.name": SERVICE}
    ).SerializeToString()


def trace_id(gen: int, batch: int, trace: int) -> bytes:
    return b"TG" + gen.to_bytes(2, "big") + batch.to_bytes(8, "big") + trace.to_bytes(4, "big")


def span_id(gen: int, seq: int) -> bytes:
    return ((gen + 1) << 48 | (seq + 1)).to_bytes(8, "big")


def spans_request(gen: int, batch: int, first_seq: int, count: int, base_ns: int) -> bytes:
    spans = []
    for i, seq in enumerate(range(first_seq, first_seq + count)):
        root_seq = first_seq + i - i % SPANS_PER_TRACE
        start = base_ns + seq * 1000
        spans.append(
            trace_pb2.Span(
                trace_id=trace_id(gen, batch, i // SPANS_PER_TRACE),
                span_id=span_id(gen, seq),
                parent_span_id=b"" if seq == root_seq else span_id(gen, root_seq),
                name="root" if seq == root_seq else "child",
                kind=trace_pb2.Span.SPAN_KIND_INTERNAL,
                start_time_unix_nano=start,
                end_time_unix_nano=start + 1_000_000,
                attributes=p.attributes({"tg.gen": gen, "tg.batch": batch, "tg.seq": seq}),
            )
        )
    return tsvc.ExportTraceServiceRequest(
        resource_spans=[
            trace_pb2.ResourceSpans(
                resource=resource_pb2.Resource(attributes=p.attributes({"service.name": SERVICE})),
                scope_spans=[
                    trace_pb2.ScopeSpans(
                        scope=common_pb2.InstrumentationScope(name="faults"), spans=spans
                    )
                ],
            )
        ]
    ).SerializeToString()


def span_stamp(span: trace_pb2.Span) -> tuple[int, int] | None:
    """(gen, seq) of a generated span, None for any other span."""
    values = {kv.key: kv.value.int_value for kv in span.attributes if kv.key.startswith("tg.")}
    if "tg.gen" not in values or "tg.seq" not in values:
        return None
    return values["tg.gen"], values["tg.seq"]


def retry_delay_of(error: grpc.RpcError) -> float | None:
    """RetryInfo's delay in seconds, from the status details trailer; None without one."""
    try:
        status = rpc_status.from_call(error)  # type: ignore[arg-type]
    except ValueError:
        return None
    if status is None:
        return None
    for detail in status.details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return float(info.retry_delay.seconds + info.retry_delay.nanos / 1e9)
    return None


@dataclass(frozen=True)
class Workload:
    """The shape of the load; the defaults keep a scenario's checks to a few seconds."""

    metric_generators: int = 2
    span_generators: int = 1
    first_generator: int = 0  # generator ids (stamps) start here: two loads must not overlap
    points_per_batch: int = 100
    spans_per_batch: int = 20
    pause_seconds: float = 0.01
    batch_deadline_seconds: float = 40.0
    attempt_timeout_seconds: float = 5.0
    first_backoff_seconds: float = 0.05
    max_backoff_seconds: float = 1.0


class Generator:
    """Threads that each send batches one after another until :meth:`stop`."""

    def __init__(self, target: str, ledger: Ledger, workload: Workload | None = None) -> None:
        self.target = target
        self.ledger = ledger
        self.workload = workload or Workload()
        self.base_ns = time.time_ns() - 600 * 1_000_000_000
        self._stopping = threading.Event()
        self._aborting = threading.Event()
        self._threads: list[threading.Thread] = []
        self._errors: list[BaseException] = []

    def start(self) -> None:
        w = self.workload
        for gen in range(w.first_generator, w.first_generator + w.metric_generators):
            self._spawn(METRICS, gen, p.EXPORT_METHOD, w.points_per_batch)
        for gen in range(w.first_generator, w.first_generator + w.span_generators):
            self._spawn(TRACES, gen, TRACES_METHOD, w.spans_per_batch)

    def stop(self, timeout: float | None = None) -> None:
        """Stop after each thread's batch in flight is answered (or given up); raise if a
        thread failed."""
        self._stopping.set()
        limit = timeout if timeout is not None else self.workload.batch_deadline_seconds + 10
        deadline = time.monotonic() + limit
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        alive = [t.name for t in self._threads if t.is_alive()]
        if self._errors:
            first = self._errors[0]
            raise AssertionError(f"generator thread failed: {first!r}") from first
        assert not alive, f"generator threads still running after {limit} s: {alive}"

    def abort(self, timeout: float = 15.0) -> None:
        """Stop now: batches in flight are given up (UNKNOWN) at their next retry (teardown)."""
        self._aborting.set()
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout)

    def wait_acknowledged(self, signal: str, items: int, timeout: float = 30.0) -> None:
        """Wait until at least ``items`` points or spans of ``signal`` were acknowledged."""
        deadline = time.monotonic() + timeout
        while self.ledger.acknowledged_items(signal) < items:
            assert time.monotonic() < deadline, (
                f"only {self.ledger.acknowledged_items(signal)} {signal} items acknowledged "
                f"in {timeout} s (wanted {items}): {self.ledger.summary()}"
            )
            time.sleep(0.05)

    def _spawn(self, signal: str, gen: int, method: str, per_batch: int) -> None:
        thread = threading.Thread(
            target=self._run, args=(signal, gen, method, per_batch), name=f"{signal}-{gen}"
        )
        thread.start()
        self._threads.append(thread)

    def _run(self, signal: str, gen: int, method: str, per_batch: int) -> None:
        try:
            with grpc.insecure_channel(self.target, options=CHANNEL_OPTIONS) as channel:
                call: Callable[..., bytes] = channel.unary_unary(method)
                batch = 0
                while not self._stopping.is_set():
                    first = batch * per_batch
                    if signal == METRICS:
                        payload = metrics_request(gen, first, per_batch, self.base_ns)
                    else:
                        payload = spans_request(gen, batch, first, per_batch, self.base_ns)
                    record = self._send(call, signal, gen, batch, first, per_batch, payload)
                    self.ledger.record(record)
                    batch += 1
                    self._stopping.wait(self.workload.pause_seconds)
        except BaseException as exc:  # noqa: BLE001 - reported by stop()
            self._errors.append(exc)

    def _send(
        self,
        call: Callable[..., bytes],
        signal: str,
        gen: int,
        batch: int,
        first: int,
        count: int,
        payload: bytes,
    ) -> BatchRecord:
        w = self.workload
        deadline = time.monotonic() + w.batch_deadline_seconds
        backoff = w.first_backoff_seconds
        attempts = 0

        def outcome(kind: Outcome, code: str = "OK", rejected: int = 0) -> BatchRecord:
            return BatchRecord(signal, gen, batch, first, count, kind, attempts, rejected, code)

        while True:
            attempts += 1
            sent = time.monotonic()
            timeout = max(0.1, min(w.attempt_timeout_seconds, deadline - sent))
            try:
                reply = call(payload, timeout=timeout)
            except grpc.RpcError as error:
                now = time.monotonic()
                status = error.code()
                delay = retry_delay_of(error)
                details = str(error.details())
                self.ledger.observe(Answer(signal, gen, status, now - sent, delay, now, details))
                retryable = status in RETRYABLE or (
                    status is grpc.StatusCode.RESOURCE_EXHAUSTED and delay is not None
                )
                if not retryable:
                    return outcome(Outcome.REJECTED, status.name)
                if delay is None:
                    delay = backoff * random.uniform(0.5, 1.0)
                    backoff = min(backoff * 2, w.max_backoff_seconds)
                if now + delay > deadline or self._aborting.wait(delay):
                    return outcome(Outcome.UNKNOWN, status.name)
                continue
            return outcome(Outcome.ACKNOWLEDGED, rejected=_rejected_items(signal, reply))


def _rejected_items(signal: str, reply: bytes) -> int:
    if signal == METRICS:
        metrics = msvc.ExportMetricsServiceResponse.FromString(reply)
        return int(metrics.partial_success.rejected_data_points)
    return int(tsvc.ExportTraceServiceResponse.FromString(reply).partial_success.rejected_spans)
