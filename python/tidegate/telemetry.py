"""The daemon's own metrics, exposed on /metrics for Prometheus.

Each daemon owns its registry, so that several daemons in one process (the test suite) never
share counters.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.process_collector import ProcessCollector

# Export latency is dominated by the decode (sub-millisecond) until backpressure builds up.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
COPY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Telemetry:
    """Counters, gauges and histograms of one daemon."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        r = self.registry
        self.requests = Counter(
            "tidegate_export_requests",
            "Export requests received, by signal, tenant and gRPC status code.",
            ["signal", "tenant", "status"],
            registry=r,
        )
        self.request_bytes = Counter(
            "tidegate_export_request_bytes",
            "Uncompressed bytes of Export requests that reached the handler.",
            ["signal"],
            registry=r,
        )
        self.export_duration = Histogram(
            "tidegate_export_duration_seconds",
            "Time from receiving an Export request to answering it.",
            ["signal"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.points_accepted = Counter(
            "tidegate_points_accepted",
            "Data points accepted into the write buffer.",
            registry=r,
        )
        self.points_rejected = Counter(
            "tidegate_points_rejected",
            "Data points rejected, by reason; the client was told in partial_success or in "
            "the status of the whole request.",
            ["reason"],
            registry=r,
        )
        self.points_stored = Counter(
            "tidegate_points_stored",
            "Data points committed to PostgreSQL.",
            registry=r,
        )
        self.points_dropped = Counter(
            "tidegate_points_dropped",
            "Accepted data points that could not be stored, by reason (each is also logged).",
            ["reason"],
            registry=r,
        )
        self.copy_batches = Counter(
            "tidegate_copy_batches",
            "COPY batches written to PostgreSQL, by outcome.",
            ["outcome"],
            registry=r,
        )
        self.copy_duration = Histogram(
            "tidegate_copy_duration_seconds",
            "Duration of one batch's transaction (partitions, series and every COPY).",
            buckets=COPY_BUCKETS,
            registry=r,
        )
        self.buffered_points = Gauge(
            "tidegate_buffered_points",
            "Accepted data points not yet committed to PostgreSQL (the write queue's depth).",
            registry=r,
        )
        self.known_series = Gauge(
            "tidegate_known_series",
            "Series ids this process has seen.",
            registry=r,
        )
        self.open_windows = Gauge(
            "tidegate_open_windows",
            "Rollup windows and hours still open (not yet written as rollup rows).",
            registry=r,
        )
        self.rollup_lag = Gauge(
            "tidegate_rollup_lag_seconds",
            "Seconds by which the oldest open rollup window is overdue (its end plus "
            "rollups.lateness_seconds passed without a flush writing it); 0 when none is.",
            registry=r,
        )
        self.rollup_rows = Counter(
            "tidegate_rollup_rows_stored",
            "Rollup rows committed to PostgreSQL, by resolution (window or hour).",
            ["resolution"],
            registry=r,
        )
        self.rollup_rows_dropped = Counter(
            "tidegate_rollup_rows_dropped",
            "Rollup rows of batches that could not be stored, by reason (each is also logged).",
            ["reason"],
            registry=r,
        )
        self.spans_accepted = Counter(
            "tidegate_spans_accepted", "Spans accepted from Export requests.", registry=r
        )
        self.spans_rejected = Counter(
            "tidegate_spans_rejected",
            "Spans refused (bad ids or times), answered in partial_success.",
            registry=r,
        )
        self.spans_stored = Counter(
            "tidegate_spans_stored", "Spans in blocks stored and indexed.", registry=r
        )
        self.spans_dropped = Counter(
            "tidegate_spans_dropped",
            "Accepted spans that could not be stored, by reason (each is also logged).",
            ["reason"],
            registry=r,
        )
        self.pending_spans = Gauge(
            "tidegate_pending_spans",
            "Accepted spans not yet stored and indexed (the trace write queue's depth).",
            registry=r,
        )
        self.trace_blocks = Counter(
            "tidegate_trace_blocks",
            "Trace blocks written, by outcome (ok, retried, failed).",
            ["outcome"],
            registry=r,
        )
        self.trace_block_bytes = Counter(
            "tidegate_trace_block_bytes", "Bytes of trace blocks stored.", registry=r
        )
        self.trace_block_duration = Histogram(
            "tidegate_trace_block_write_duration_seconds",
            "Duration of one block's upload and index commit.",
            buckets=COPY_BUCKETS,
            registry=r,
        )
        self.retention_runs = Counter(
            "tidegate_retention_runs",
            "Retention passes, by outcome (ok, failed).",
            ["outcome"],
            registry=r,
        )
        self.retention_dropped = Counter(
            "tidegate_retention_dropped",
            "What retention removed: day partitions and trace blocks, by kind.",
            ["kind"],
            registry=r,
        )
        self.series_collisions = Counter(
            "tidegate_series_collisions",
            "Series whose 64-bit id collided with a different series; never merged.",
            ["where"],
            registry=r,
        )
        self.new_series = Counter(
            "tidegate_series_created",
            "Series rows inserted into PostgreSQL by this process.",
            registry=r,
        )
        self.spool_bytes = Gauge(
            "tidegate_spool_bytes",
            "Bytes of spool segments on disk (requests not yet stored by every sink).",
            ["signal"],
            registry=r,
        )
        self.spool_records = Gauge(
            "tidegate_spool_records",
            "Spool records not yet released.",
            ["signal"],
            registry=r,
        )
        self.spool_append_duration = Histogram(
            "tidegate_spool_append_seconds",
            "Time from a decoded request's append to its fsync (group commit), by signal.",
            ["signal"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.spool_released_bytes = Counter(
            "tidegate_spool_released_bytes",
            "Bytes of spool segments deleted once every record in them was stored.",
            ["signal"],
            registry=r,
        )
        self.spool_damage = Counter(
            "tidegate_spool_damaged",
            "Spool damage found at startup: corrupt records skipped, torn-tail bytes truncated.",
            ["signal", "kind"],
            registry=r,
        )
        self.replayed_records = Counter(
            "tidegate_spool_replayed_records",
            "Spool records replayed at startup: in full, or into open rollups only.",
            ["signal", "mode"],
            registry=r,
        )
        self.duplicate_requests = Counter(
            "tidegate_duplicate_requests",
            "Requests identical to one accepted within the deduplication horizon: "
            "acknowledged again, not stored twice.",
            ["signal"],
            registry=r,
        )
        self.dead_letters = Counter(
            "tidegate_dead_letters",
            "Batches or blocks storage refused for good, kept in tidegate_dead_letters.",
            ["sink"],
            registry=r,
        )
        self.circuit_state = Gauge(
            "tidegate_sink_circuit_state",
            "Circuit breaker of each sink: 0 closed, 1 open, 2 half-open.",
            ["sink"],
            registry=r,
        )
        self.throttled = Counter(
            "tidegate_throttled_requests",
            "Export requests refused with RESOURCE_EXHAUSTED because their tenant was over a "
            "rate limit (the client was told when to retry).",
            ["signal", "tenant"],
            registry=r,
        )
        self.spans_sampled_out = Counter(
            "tidegate_spans_sampled_out",
            "Spans accepted and deliberately not stored, by the sampling ratio of their service.",
            ["tenant"],
            registry=r,
        )
        self.active_series = Gauge(
            "tidegate_active_series",
            "Series of each tenant with an accepted point within the last hour (what the "
            "cardinality limit counts).",
            ["tenant"],
            registry=r,
        )
