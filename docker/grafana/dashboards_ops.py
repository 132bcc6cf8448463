"""The daemon's own dashboards, from its Prometheus metrics (python/tidegate/telemetry.py)."""

from __future__ import annotations

from common import PanelIds, base, graph, promql, single
from grafana_foundation_sdk.builders import dashboard

RATE = "[$__rate_interval]"
JOB = '{job="tidegate"}'


def p95(histogram: str, by: str = "") -> str:
    group = f"le{', ' + by if by else ''}"
    return f"histogram_quantile(0.95, sum by ({group}) (rate({histogram}_bucket{RATE})))"


def operations() -> dashboard.Dashboard:
    """Ingest, storage and resource panels for tidegate operators."""
    ids = PanelIds()
    board = base("tidegate operations", "tidegate-operations", ["operations"])
    board.with_row(dashboard.Row("Ingest").id(ids()))
    board.with_panel(
        graph(
            ids,
            "Ingest rate by signal",
            "short",
            [
                promql(f"sum(rate(tidegate_points_accepted_total{RATE}))", "metric points", "A"),
                promql(f"sum(rate(tidegate_spans_accepted_total{RATE}))", "spans", "B"),
            ],
            description="Data points and spans accepted per second.",
        )
    )
    board.with_panel(
        graph(
            ids,
            "Export requests by status",
            "reqps",
            [
                promql(
                    f"sum by (signal, status) (rate(tidegate_export_requests_total{RATE}))",
                    "{{signal}} {{status}}",
                )
            ],
        )
    )
    board.with_panel(
        graph(
            ids,
            "Rejected and dropped by reason",
            "short",
            [
                promql(
                    f"sum by (reason) (rate(tidegate_points_rejected_total{RATE}))",
                    "points rejected: {{reason}}",
                    "A",
                ),
                promql(
                    f"sum by (reason) (rate(tidegate_points_dropped_total{RATE}))",
                    "points dropped: {{reason}}",
                    "B",
                ),
                promql(f"sum(rate(tidegate_spans_rejected_total{RATE}))", "spans rejected", "C"),
                promql(
                    f"sum by (reason) (rate(tidegate_spans_dropped_total{RATE}))",
                    "spans dropped: {{reason}}",
                    "D",
                ),
            ],
            description="Rejected: the client was told. Dropped: accepted, then lost (logged).",
        )
    )
    board.with_panel(
        graph(
            ids,
            "Export latency p95",
            "s",
            [promql(p95("tidegate_export_duration_seconds", "signal"), "{{signal}}")],
        )
    )
    board.with_row(dashboard.Row("Tenants").id(ids()))
    board.with_panel(
        graph(
            ids,
            "Requests by tenant",
            "reqps",
            [
                promql(
                    f"sum by (tenant, status) (rate(tidegate_export_requests_total{RATE}))",
                    "{{tenant}} {{status}}",
                )
            ],
            description="UNAUTHENTICATED (empty tenant): refused keys. "
            "RESOURCE_EXHAUSTED: over a rate limit.",
            width=8,
        )
    )
    board.with_panel(
        graph(
            ids,
            "Throttled requests",
            "reqps",
            [
                promql(
                    f"sum by (tenant, signal) (rate(tidegate_throttled_requests_total{RATE}))",
                    "{{tenant}} {{signal}}",
                )
            ],
            description="Refused with RESOURCE_EXHAUSTED and RetryInfo (limits.<tenant>.*).",
            width=8,
        )
    )
    board.with_panel(
        graph(
            ids,
            "Active series and sampled-out spans",
            "short",
            [
                promql("sum by (tenant) (tidegate_active_series)", "{{tenant}} active series", "A"),
                promql(
                    f"sum by (tenant) (rate(tidegate_spans_sampled_out_total{RATE}))",
                    "{{tenant}} spans sampled out/s",
                    "B",
                ),
            ],
            description="Active series: what cardinality.<tenant>.max_active_series limits.",
            width=8,
        )
    )
    board.with_row(dashboard.Row("Buffers and spool").id(ids()))
    board.with_panel(
        graph(
            ids,
            "Spool size",
            "bytes",
            [promql("sum by (signal) (tidegate_spool_bytes)", "{{signal}} bytes")],
            width=8,
        )
    )
    board.with_panel(
        graph(
            ids,
            "Spool records",
            "short",
            [promql("sum by (signal) (tidegate_spool_records)", "{{signal}} records")],
            width=8,
        )
    )
    board.with_panel(
        graph(
            ids,
            "Buffered points and pending spans",
            "short",
            [
                promql("sum(tidegate_buffered_points)", "buffered points", "A"),
                promql("sum(tidegate_pending_spans)", "pending spans", "B"),
            ],
            width=8,
        )
    )
    board.with_row(dashboard.Row("Storage").id(ids()))
    board.with_panel(
        graph(
            ids,
            "Sink circuit breaker",
            "short",
            [promql("max by (sink) (tidegate_sink_circuit_state)", "{{sink}}")],
            description="0 closed, 1 open, 2 half-open.",
            width=8,
        )
    )
    board.with_panel(
        graph(
            ids,
            "COPY and trace block write p95",
            "s",
            [
                promql(p95("tidegate_copy_duration_seconds"), "COPY batch", "A"),
                promql(p95("tidegate_trace_block_write_duration_seconds"), "trace block", "B"),
            ],
            width=8,
        )
    )
    board.with_panel(
        graph(
            ids,
            "Rollup lag",
            "s",
            [promql("max(tidegate_rollup_lag_seconds)", "lag")],
            description="How far the newest written rollup window is behind the wall clock.",
            width=8,
        )
    )
    board.with_panel(
        graph(
            ids,
            "Known series and open windows",
            "short",
            [
                promql("sum(tidegate_known_series)", "known series", "A"),
                promql("sum(tidegate_open_windows)", "open windows", "B"),
            ],
            width=8,
        )
    )
    board.with_panel(
        graph(
            ids,
            "Dead letters",
            "short",
            [promql(f"sum by (sink) (increase(tidegate_dead_letters_total{RATE}))", "{{sink}}")],
            description="Batches or blocks refused for good: see table tidegate_dead_letters.",
            width=8,
        )
    )
    board.with_panel(
        graph(
            ids,
            "Process memory (RSS)",
            "bytes",
            [promql(f"process_resident_memory_bytes{JOB}", "{{instance}}")],
            width=8,
        )
    )
    board.with_panel(
        graph(
            ids,
            "Process CPU (cores)",
            "short",
            [promql(f"rate(process_cpu_seconds_total{JOB}{RATE})", "{{instance}}")],
            width=8,
        )
    )
    return board


def health(ids: PanelIds) -> dashboard.Dashboard:
    """Up, dependency response times and memory (dashboards_app adds the availability)."""
    board = base("tidegate health and SLA", "tidegate-health", ["sla"])
    board.with_panel(single(ids, "Up", "none", promql(f"min(up{JOB})", "up")))
    board.with_panel(
        single(
            ids,
            "Memory (RSS)",
            "bytes",
            promql(f"max(process_resident_memory_bytes{JOB})", "rss"),
        )
    )
    board.with_panel(
        graph(
            ids,
            "Database response time p95 (COPY batch transaction)",
            "s",
            [promql(p95("tidegate_copy_duration_seconds"), "PostgreSQL")],
            description="Proxy: tidegate exports no PostgreSQL ping time; a batch transaction "
            "(partitions, series, every COPY) is the closest measurement.",
        )
    )
    board.with_panel(
        graph(
            ids,
            "Object store response time p95 (trace block write)",
            "s",
            [promql(p95("tidegate_trace_block_write_duration_seconds"), "object store")],
            description="Proxy: one block's upload plus its index commit.",
        )
    )
    return board
