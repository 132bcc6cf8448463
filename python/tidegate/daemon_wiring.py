"""How the daemon connects its parts: the receiver's view of each signal, live settings put
into force, and the per-tenant active-series gauge."""

from __future__ import annotations

import asyncio
import logging

from prometheus_client import Gauge

from tidegate._core import ExportSummary, MetricsCore, TraceCore, TraceExportSummary
from tidegate.intake import Intake
from tidegate.live import LiveSnapshot
from tidegate.metrics_writer import MetricsWriter
from tidegate.ratelimit import TenantLimiter
from tidegate.receiver import METRICS_SERVICE, TRACE_SERVICE, Signal
from tidegate.retention import Retention
from tidegate.telemetry import Telemetry
from tidegate.trace_writer import TraceWriter

log = logging.getLogger(__name__)

ACTIVE_SERIES_REPORT_SECONDS = 5.0


class LiveApplier:
    """Puts each live snapshot into force, in place: no state is lost."""

    def __init__(
        self,
        core: MetricsCore,
        trace_core: TraceCore,
        limiter: TenantLimiter,
        retention: Retention,
    ) -> None:
        self._core = core
        self._trace_core = trace_core
        self._limiter = limiter
        self._retention = retention

    def __call__(self, snapshot: LiveSnapshot) -> None:
        limits, default = snapshot.series_limits()
        self._core.set_series_limits(limits, default)
        if snapshot.window_seconds != self._core.window_seconds:
            self._core.set_window_seconds(snapshot.window_seconds)
        ratios, default_ratio = snapshot.sampling()
        self._trace_core.set_sampling(ratios, default_ratio)
        try:
            self._limiter.configure(snapshot.limit)
        except ValueError as exc:  # validated already; a limit the buckets cannot hold
            log.error("live settings: rate limits not changed: %s", exc)
        self._retention.set_days(snapshot.metrics_days, snapshot.traces_days)
        logging.getLogger("tidegate").setLevel(snapshot.log_level.upper())


def make_signals(
    core: MetricsCore,
    trace_core: TraceCore,
    writer: MetricsWriter,
    trace_writer: TraceWriter,
    intakes: dict[str, Intake],
    telemetry: Telemetry,
) -> list[Signal]:
    """How the receiver reaches each signal's core, writer and intake."""
    sampled_out = telemetry.spans_sampled_out

    def account_metrics(summary: ExportSummary, tenant: str) -> None:
        writer.account(summary)

    def account_traces(summary: TraceExportSummary, tenant: str) -> None:
        trace_writer.account(summary)
        if summary.sampled_out_spans:
            sampled_out.labels(tenant).inc(summary.sampled_out_spans)

    return [
        Signal(
            "metrics",
            METRICS_SERVICE,
            lambda request, now_ns, tenant: core.ingest(request, now_ns, tenant=tenant),
            lambda request, now_ns, tenant: core.check(request, now_ns, tenant=tenant),
            writer.queue_full,
            account_metrics,
            lambda summary: int(summary.accepted_points),
            intakes["metrics"],
        ),
        Signal(
            "traces",
            TRACE_SERVICE,
            lambda request, now_ns, tenant: trace_core.ingest(request, now_ns, tenant=tenant),
            lambda request, now_ns, tenant: trace_core.check(request, now_ns, tenant=tenant),
            trace_writer.queue_full,
            account_traces,
            lambda summary: int(summary.accepted_spans),
            intakes["traces"],
        ),
    ]


async def report_active_series(core: MetricsCore, gauge: Gauge) -> None:
    """Keeps `tidegate_active_series` in step with the core, every few seconds (until
    cancelled)."""
    shown: set[str] = set()
    while True:
        counts = core.active_series_by_tenant()
        for tenant, count in counts.items():
            gauge.labels(tenant).set(count)
        for gone in shown - counts.keys():
            gauge.remove(gone)
        shown = set(counts)
        await asyncio.sleep(ACTIVE_SERIES_REPORT_SECONDS)
