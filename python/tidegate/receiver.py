"""OTLP/gRPC receiver: raw request bytes in, the Rust core's encoded response out.

The handler is registered as a generic handler with no deserializer, so grpc hands over the
request bytes as they came off the wire (after gzip, which grpc undoes); no Python protobuf
touches a request on the way in.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import grpc

from tidegate._core import ExportSummary, MetricsCore
from tidegate.config import Config
from tidegate.errors import BackpressureError
from tidegate.grpc_status import status_for
from tidegate.telemetry import Telemetry

log = logging.getLogger(__name__)

METRICS_SERVICE = "opentelemetry.proto.collector.metrics.v1.MetricsService"


class MetricsReceiver:
    """Handles ``MetricsService/Export``: admission, decode off the event loop, accounting."""

    def __init__(
        self,
        config: Config,
        core: MetricsCore,
        telemetry: Telemetry,
        unwritten_points: Callable[[], int],
        on_accepted: Callable[[], None],
    ) -> None:
        self._config = config
        self._core = core
        self._telemetry = telemetry
        self._unwritten_points = unwritten_points
        self._on_accepted = on_accepted
        self._in_flight_calls = 0
        self._in_flight_bytes = 0
        # The Rust core releases the GIL, so these threads decode in parallel.
        self._executor = ThreadPoolExecutor(
            max_workers=config.ingest.decode_threads, thread_name_prefix="tidegate-decode"
        )

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            METRICS_SERVICE,
            {"Export": grpc.unary_unary_rpc_method_handler(self.export)},
        )

    async def close(self) -> None:
        # Waiting for the decode threads blocks; keep it off the event loop.
        await asyncio.to_thread(self._executor.shutdown, wait=True)

    async def export(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:  # type: ignore[type-arg]
        started = time.perf_counter()
        tm = self._telemetry
        tm.request_bytes.labels("metrics").inc(len(request))
        try:
            self.admit(len(request))
            self._in_flight_calls += 1
            self._in_flight_bytes += len(request)
            try:
                loop = asyncio.get_running_loop()
                summary = await loop.run_in_executor(
                    self._executor, self._core.ingest, request, time.time_ns()
                )
            finally:
                self._in_flight_calls -= 1
                self._in_flight_bytes -= len(request)
        except Exception as exc:  # every failure is mapped to a status and answered below
            answer = status_for(exc)
            tm.requests.labels("metrics", answer.code.name).inc()
            tm.export_duration.labels("metrics").observe(time.perf_counter() - started)
            if answer.code is grpc.StatusCode.INTERNAL:
                log.exception("metrics export failed")
            elif answer.code is grpc.StatusCode.INVALID_ARGUMENT:
                log.info("rejected undecodable metrics request: %s", exc)
            await context.abort_with_status(answer.to_grpc_status())
            raise AssertionError("abort_with_status returns only by raising") from exc
        self._account(summary)
        tm.requests.labels("metrics", "OK").inc()
        tm.export_duration.labels("metrics").observe(time.perf_counter() - started)
        return summary.response

    def admit(self, request_bytes: int) -> None:
        """Raise BackpressureError (answered UNAVAILABLE with RetryInfo) when accepting a
        request of this size would exceed the write queue, the concurrent calls being decoded,
        or the bytes those calls hold."""
        ingest = self._config.ingest
        unwritten = self._unwritten_points()
        if unwritten >= ingest.max_buffered_points:
            reason = (
                f"write queue full ({unwritten} points not yet stored, "
                f"limit {ingest.max_buffered_points})"
            )
        elif self._in_flight_calls >= self._config.grpc.max_concurrent_rpcs:
            reason = (
                f"too many concurrent Export calls (limit {self._config.grpc.max_concurrent_rpcs})"
            )
        elif (
            self._in_flight_calls
            and self._in_flight_bytes + request_bytes > ingest.max_in_flight_bytes
        ):
            # A lone request is always let through: the message size limit already bounds it.
            reason = (
                f"too many request bytes being decoded ({self._in_flight_bytes} + "
                f"{request_bytes}, limit {ingest.max_in_flight_bytes})"
            )
        else:
            return
        raise BackpressureError(reason, ingest.retry_after_seconds)

    def _account(self, summary: ExportSummary) -> None:
        tm = self._telemetry
        if summary.accepted_points:
            tm.points_accepted.inc(summary.accepted_points)
            self._on_accepted()
        for reason, count in summary.rejected_by_reason.items():
            tm.points_rejected.labels(reason).inc(count)
        if summary.rejected_points:
            log.info("partially rejected metrics request: %s", summary.error_message)
