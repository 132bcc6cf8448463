"""OTLP/gRPC receiver: raw request bytes in, the Rust core's encoded response out.

Each signal (metrics, traces) is registered as a generic handler with no deserializer, so grpc
hands over the request bytes as they came off the wire (after gzip, which grpc undoes); no
Python protobuf touches a request on the way in. Both signals share one admission budget
(concurrent calls, request bytes being decoded, spool bytes) and one pool of decode threads.

Before anything else a request is authenticated: its API key (if any) names its tenant, and
an invalid key is refused before the request is even read (`grpc_auth.AuthInterceptor`). Then
the tenant's rate limits, then the shared admission budget, then the decode. A request is
acknowledged only once it is decoded into the core and fsynced in its signal's spool. A resend
of bytes accepted within the deduplication horizon is answered as the first one was, without
being stored again.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol

import grpc

from tidegate.config import Config
from tidegate.errors import AuthenticationError, BackpressureError, ThrottledError
from tidegate.grpc_status import status_for
from tidegate.intake import Intake, request_hash
from tidegate.spool import SpoolRecord
from tidegate.telemetry import Telemetry

# Invocation metadata (pairs of key and value) → tenant; raises AuthenticationError.
Authenticate = Callable[[Iterable[tuple[str, str | bytes]] | None], str]

log = logging.getLogger(__name__)

METRICS_SERVICE = "opentelemetry.proto.collector.metrics.v1.MetricsService"
TRACE_SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
# The longest RetryInfo delay a full spool asks for, and the fill below which it is no longer
# full. Half, not just under the limit: a spool that one commit dips below the limit and
# returning clients fill again within a second is still full, and restarting its delays at
# `ingest.retry_after_seconds` would let an exporter spend its few retries in that second.
# A spool that refused nothing for the longest delay is no longer full either.
MAX_RETRY_AFTER_SECONDS = 30.0
SPOOL_LOW_WATER = 0.5
# At shutdown, how long new calls are refused with RetryInfo before the listener closes.
SHUTDOWN_NOTICE_SECONDS = 0.5


@dataclass(frozen=True)
class Signal:
    """One OTLP signal as the receiver serves it."""

    name: str  # the `signal` label of the request metrics
    service: str
    # The core's ingest (GIL released): request bytes, now in ns, tenant → a summary with
    # `.response` and `.seq`.
    ingest: Callable[[bytes, int, str], Any]
    # The same checks and summary without buffering anything (the request waits in the spool).
    check: Callable[[bytes, int, str], Any]
    # Why the signal's write queue cannot take more now, or None.
    queue_full: Callable[[], str | None]
    # Counts what a summary of a tenant's request accepted and rejected.
    account: Callable[[Any, str], None]
    # How many items (points, spans) a summary accepted: what the tenant's limit is charged.
    accepted: Callable[[Any], int]
    intake: Intake


class Limiter(Protocol):
    """Per-tenant rate limits (`tidegate.ratelimit.TenantLimiter`)."""

    def admit(self, tenant: str, signal: str) -> None: ...

    def charge(self, tenant: str, signal: str, items: int) -> None: ...


class Receiver:
    """Handles ``Export`` of every signal: admission, decode off the event loop, accounting."""

    def __init__(
        self,
        config: Config,
        telemetry: Telemetry,
        signals: list[Signal],
        authenticate: Authenticate,
        limiter: Limiter,
    ) -> None:
        self._config = config
        self._telemetry = telemetry
        self._signals = signals
        self._authenticate = authenticate
        self._limiter = limiter
        self._in_flight_calls = 0
        self._in_flight_bytes = 0
        self._stopping = False
        # Since when (time.monotonic()) the spool has turned requests away, if it does, and
        # when it last did.
        self._spool_full_since: float | None = None
        self._spool_refused_at = 0.0
        # The acceptance of each request under way (see `export`).
        self._accepting: set[asyncio.Future[bytes]] = set()
        # The Rust core releases the GIL, so these threads decode in parallel.
        self._executor = ThreadPoolExecutor(
            max_workers=config.ingest.decode_threads,
            thread_name_prefix="tidegate-decode",
            initializer=make_thread_nicer,
            initargs=(config.ingest.decode_thread_niceness,),
        )

    def handlers(self) -> list[grpc.GenericRpcHandler]:
        return [
            grpc.method_handlers_generic_handler(
                signal.service,
                {"Export": grpc.unary_unary_rpc_method_handler(self._handler_of(signal))},
            )
            for signal in self._signals
        ]

    def _handler_of(self, signal: Signal) -> Callable[..., Any]:
        async def export(request: bytes, context: grpc.aio.ServicerContext) -> bytes:  # type: ignore[type-arg]
            return await self.export(signal, request, context)

        return export

    @property
    def shutdown_notice_seconds(self) -> float:
        """How long new calls are refused at shutdown before the listener closes."""
        return min(SHUTDOWN_NOTICE_SECONDS, self._config.grpc.shutdown_grace_seconds)

    def stop_intake(self) -> None:
        """From now on every Export gets UNAVAILABLE with RetryInfo (shutdown)."""
        self._stopping = True

    async def close(self) -> None:
        # Waiting for the decode threads blocks; keep it off the event loop.
        await asyncio.to_thread(self._executor.shutdown, wait=True)
        # Requests whose calls went away finish being accepted (spooled) before the spools
        # close, which the daemon does after this.
        await asyncio.gather(*self._accepting, return_exceptions=True)

    async def export(
        self,
        signal: Signal,
        request: bytes,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> bytes:
        started = time.perf_counter()
        tm = self._telemetry
        # The interceptor refused invalid keys before the request was read; this names the
        # tenant of a valid one (and refuses a key revoked in between).
        try:
            tenant = self._authenticate(context.invocation_metadata())
        except AuthenticationError as exc:
            await self._refuse(signal, "", exc, started, context)
        tm.request_bytes.labels(signal.name).inc(len(request))
        intake = signal.intake
        digest = request_hash(signal.name, tenant, request)
        while (first := intake.recent.get(digest, time.time_ns())) is None:
            if (pending := intake.in_flight(digest)) is None:
                break
            # The same bytes are being accepted right now: answer as that call is answered.
            # When it fails, look again: another resend that waited with this one may have
            # begun by now, and this one then waits for it rather than being stored twice.
            try:
                response = await asyncio.shield(pending)
            except asyncio.CancelledError:
                if not pending.cancelled():
                    tm.requests.labels(signal.name, tenant, "CANCELLED").inc()
                    raise  # this call itself was cancelled
            else:
                return self._duplicate(signal, tenant, response, started)
        if first is not None:
            return self._duplicate(signal, tenant, first.response, started)
        marker = intake.begin(digest)
        # A task of its own, so that a call that goes away (its deadline, a cancel) while the
        # request is decoded or spooled does not stop halfway: by then the core may have
        # given it a sequence number that the writer waits for, and a resend of the same
        # bytes waits for this marker.
        accepting = asyncio.ensure_future(self._accept(signal, request, tenant, digest))
        accepting.add_done_callback(functools.partial(_settle_marker, intake, digest, marker))
        self._accepting.add(accepting)
        accepting.add_done_callback(self._accepting.discard)
        try:
            response = await asyncio.shield(accepting)
        except asyncio.CancelledError:
            # The call went away (its deadline, its client); the acceptance goes on.
            tm.requests.labels(signal.name, tenant, "CANCELLED").inc()
            accepting.add_done_callback(functools.partial(_log_unanswered, signal.name))
            raise
        except Exception as exc:  # noqa: BLE001 - every failure is answered with its status
            await self._refuse(signal, tenant, exc, started, context)
        tm.requests.labels(signal.name, tenant, "OK").inc()
        tm.export_duration.labels(signal.name).observe(time.perf_counter() - started)
        return response

    async def _refuse(
        self,
        signal: Signal,
        tenant: str,
        exc: Exception,
        started: float,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> NoReturn:
        """Answer ``exc`` with its status (and RetryInfo where retrying helps)."""
        answer = status_for(exc)
        tm = self._telemetry
        tm.requests.labels(signal.name, tenant, answer.code.name).inc()
        tm.export_duration.labels(signal.name).observe(time.perf_counter() - started)
        if answer.code is grpc.StatusCode.INTERNAL:
            log.exception("%s export failed", signal.name)
        elif answer.code is grpc.StatusCode.INVALID_ARGUMENT:
            log.info("rejected undecodable %s request: %s", signal.name, exc)
        await context.abort_with_status(answer.to_grpc_status())
        raise AssertionError("abort_with_status returns only by raising") from exc

    async def _accept(self, signal: Signal, request: bytes, tenant: str, digest: bytes) -> bytes:
        """Admit, decode into the core, make durable; return the response to send."""
        try:
            self._limiter.admit(tenant, signal.name)
        except ThrottledError as exc:
            self._telemetry.throttled.labels(signal.name, tenant).inc()
            log.debug("throttled %s request of tenant %s: %s", signal.name, tenant, exc)
            raise
        self.admit(len(request), signal)
        self._in_flight_calls += 1
        self._in_flight_bytes += len(request)
        try:
            now_ns = time.time_ns()
            loop = asyncio.get_running_loop()
            intake = signal.intake
            # With a spool, a full write queue (storage slow or down) does not turn clients
            # away: requests go to the spool only, and are ingested from it once there is room.
            defer = intake.durable and (intake.deferring or signal.queue_full() is not None)
            if defer:
                summary = await loop.run_in_executor(
                    self._executor, signal.check, request, now_ns, tenant
                )
                intake.defer(summary.seq)
                # It has a sequence number now (deferred): it must reach the spool, or the
                # writer would wait for it forever. `export` runs this in a task that the
                # call's cancellation does not reach.
                record = SpoolRecord(summary.seq, now_ns, tenant, digest, request)
                appending = time.perf_counter()
                await intake.persist(record, summary.response)
                self._observe_append(signal, appending)
            else:
                summary = await self._ingest_durably(signal, request, now_ns, tenant, digest)
        finally:
            self._in_flight_calls -= 1
            self._in_flight_bytes -= len(request)
        signal.account(summary, tenant)
        self._limiter.charge(tenant, signal.name, signal.accepted(summary))
        response: bytes = summary.response
        return response

    async def _ingest_durably(
        self, signal: Signal, request: bytes, now_ns: int, tenant: str, digest: bytes
    ) -> Any:
        """Ingest in a decode thread, which then queues the request in the spool itself: the
        event loop wakes once the spool's group is fsynced, not also between the ingest and
        the append. Returns the core's summary."""
        loop = asyncio.get_running_loop()
        durable: asyncio.Future[None] = loop.create_future()
        ingested: list[tuple[Any, SpoolRecord, float]] = []

        def ingest_and_queue() -> None:
            try:
                summary = signal.ingest(request, now_ns, tenant)
                # It has a sequence number now: it must reach the spool, or the writer would
                # wait for it forever. `export` awaits this in a task that the call's
                # cancellation does not reach.
                record = SpoolRecord(summary.seq, now_ns, tenant, digest, request)
                ingested.append((summary, record, time.perf_counter()))
                signal.intake.queue_durable(record, durable, loop)
            except Exception as exc:  # noqa: BLE001 - answered on the loop, with its status
                loop.call_soon_threadsafe(_fail, durable, exc)

        self._executor.submit(ingest_and_queue)
        await durable
        summary, record, appending = ingested[0]
        self._observe_append(signal, appending)
        signal.intake.note_accepted(record, summary.response)
        return summary

    def _observe_append(self, signal: Signal, appending: float) -> None:
        self._telemetry.spool_append_duration.labels(signal.name).observe(
            time.perf_counter() - appending
        )

    def _duplicate(self, signal: Signal, tenant: str, response: bytes, started: float) -> bytes:
        tm = self._telemetry
        tm.duplicate_requests.labels(signal.name).inc()
        tm.requests.labels(signal.name, tenant, "OK").inc()
        tm.export_duration.labels(signal.name).observe(time.perf_counter() - started)
        return response

    def admit(self, request_bytes: int, signal: Signal) -> None:
        """Raise BackpressureError (answered UNAVAILABLE with RetryInfo) when accepting a
        request of this size would exceed the spool (or, without one, the signal's write
        queue), the concurrent calls being decoded, or the bytes those calls hold; and once
        shutdown has begun."""
        ingest = self._config.ingest
        # With a spool, a full write queue defers requests instead (see `_accept`).
        reason = None if signal.intake.durable else signal.queue_full()
        spool_bytes = sum(s.intake.unstored_bytes for s in self._signals)
        if self._stopping:
            # Back once the listener has closed (a refused connection: UNAVAILABLE), not into
            # its closing, where grpc cancels the calls it has not started (CANCELLED).
            notice = self.shutdown_notice_seconds
            raise BackpressureError("shutting down", max(ingest.retry_after_seconds, 2 * notice))
        if reason is not None:
            pass
        elif spool_bytes + request_bytes > self._config.spool.max_bytes:
            now = time.monotonic()
            # Nothing refused for the longest delay asked: every client came back and fitted.
            quiet = now - self._spool_refused_at > MAX_RETRY_AFTER_SECONDS
            if self._spool_full_since is None or quiet:
                self._spool_full_since = now
            self._spool_refused_at = now
            reason = (
                f"spool full ({spool_bytes} bytes of requests not yet stored, "
                f"limit {self._config.spool.max_bytes})"
            )
            # Storage has been away this long: clients are told to wait longer the longer
            # it lasts, so that those that retry a fixed number of times outlast an outage.
            full_for = now - self._spool_full_since
            delay = max(ingest.retry_after_seconds, min(MAX_RETRY_AFTER_SECONDS, full_for / 2))
            raise BackpressureError(reason, delay)
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
            if spool_bytes < SPOOL_LOW_WATER * self._config.spool.max_bytes:
                # Room again, not just a small request squeezing in: the outage is over.
                self._spool_full_since = None
            return
        raise BackpressureError(reason, ingest.retry_after_seconds)


def _fail(future: asyncio.Future[None], error: Exception) -> None:
    if not future.done():  # cancelled by its caller
        future.set_exception(error)


def _settle_marker(
    intake: Intake, digest: bytes, marker: asyncio.Future[bytes], accepting: asyncio.Future[bytes]
) -> None:
    """Once a request is accepted (or failed): resends of the same bytes waiting on
    ``marker`` get its answer (or are tried on their own)."""
    if not accepting.cancelled() and accepting.exception() is None:
        marker.set_result(accepting.result())
    intake.finish(digest, marker)


def _log_unanswered(signal: str, accepting: asyncio.Future[bytes]) -> None:
    """A request whose call went away: say how its acceptance ended, since no one answers
    it (as `_refuse` would have: a traceback for an internal error)."""
    if accepting.cancelled():
        log.warning("%s request of a call that went away: cancelled before it was accepted", signal)
    elif (error := accepting.exception()) is None:
        log.info("%s request of a call that went away: accepted all the same", signal)
    elif status_for(error).code is grpc.StatusCode.INTERNAL:
        log.error("%s request of a call that went away failed", signal, exc_info=error)
    else:
        log.info("%s request of a call that went away was not accepted: %s", signal, error)


def make_thread_nicer(niceness: int) -> None:
    """Lower the calling thread's CPU priority by ``niceness`` steps (up to nice 19).

    For the decode threads: the event loop answers every call and hands every request to
    them, and each time one of them preempts it, every call waits (bench/RESULTS.md). Linux
    keeps a priority per thread; elsewhere this would renice the whole process, so it does
    nothing there.
    """
    if niceness == 0 or not sys.platform.startswith("linux"):
        return
    thread = threading.get_native_id()
    try:
        current = os.getpriority(os.PRIO_PROCESS, thread)
        os.setpriority(os.PRIO_PROCESS, thread, min(19, current + niceness))
    except OSError as exc:
        log.warning("%s keeps its CPU priority: %s", threading.current_thread().name, exc)
