# Scenario: 8-span traces of 2-3 services, 1,000 spans per request, through the real daemon into
# PostgreSQL and a trace store (a local directory, and S3 served by moto).
"""Trace ingest throughput, stored bytes per span, PUTs per hour and trace-by-id latency.

Requests: ``ExportTraceServiceRequest`` templates built with the ``opentelemetry-proto`` package
before any clock starts (``--pool`` of them, 1,000 spans each): 125 traces of 8 spans over 2 or 3
services of a shop (a SERVER root; a CLIENT call to each other service, answered by its SERVER
span; database and cache CLIENT spans under those), 4-8 attributes per span (``http.method``,
``http.route``, ``http.status_code``, ``net.peer.name``, ``db.system``, ...), one event on about
a fifth of the spans, status ERROR on about 2 %. Spans are grouped the way a collector batches
them: one ResourceSpans per service (8 resource attributes), one ScopeSpans per instrumentation
(http, db). Request number ``k`` is template ``k % pool`` with every trace and span id replaced by
random bytes seeded by ``(run salt, k)``: the ids are unique across the run and the benchmark can
name the traces of any acknowledged request afterwards without keeping them.

Per store (``--store file|s3|both``; s3 is a moto server started here, its bucket created here,
the daemon pointed at it by ``TIDEGATE_S3_*`` variables), one throwaway embedded PostgreSQL
(a database per store) and one ``tidegate serve`` subprocess on free loopback ports:

1. throughput: ``--processes`` x ``--streams`` streams of raw unary gRPC calls (one call in
   flight each, UNAVAILABLE retried after 50 ms and counted) for ``--duration`` seconds; then
   the daemon's ``tidegate_spans_stored_total`` is polled every 0.1 s until it reaches the spans
   acknowledged, and ``sum(span_count)`` of ``trace_index`` must equal them (polling that sum
   would load the PostgreSQL being measured). Stored spans/s is over the time from the first
   send until all are indexed. Daemon, PostgreSQL (and moto) CPU cover the same interval; peak
   RSS is the daemon's, sampled every 0.2 s.
2. stored bytes per span: block objects (file sizes, or S3 object sizes from a listing) plus
   ``pg_total_relation_size`` of the ``trace_index`` partitions, over the spans stored.
3. PUTs per hour at 10,000 spans/s: requests of 1,000 spans paced at 10/s for
   ``--paced-duration`` seconds, blocks counted from ``tidegate_trace_blocks_total{outcome="ok"}``
   over the sending window and extrapolated; once with the 8-span traces, once with 2-span traces
   (10 times as many traces for the same spans).
4. trace by id: once ``--spans-for-lookup`` spans are stored (the throughput run's count; topped
   up when short), ``tidegate.traces.get_trace`` on one asyncpg connection and a store opened
   with ``open_trace_store`` for ``--lookups`` random known traces (after 5 warm-up calls); every
   answer must hold exactly the trace's spans. Then ``tidegate.traces.search`` for the newest
   20 traces of the last hour, with no filter, a service, a status, an attribute, a root name,
   a minimum duration, and a duration no trace has (median of 3 each).

Finally the daemon gets SIGTERM and must exit 0 with every acknowledged span indexed. Missed
targets are reported (PASS/MISS), not failed; lost spans, wrong answers and errors exit 1.

    .venv/bin/python bench/bench_traces.py [--duration 20] [--store file|s3|both]
        [--spans-for-lookup 1000000] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    # Run as `python bench/bench_traces.py`: make the `bench` package importable.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.procwatch import stop_process
from bench.trace_figures import (
    TARGET_BYTES_PER_SPAN,
    TARGET_LOOKUP_P95_MS,
    TARGET_STORED_PER_S,
    StoreFigures,
    set_verdicts,
)
from bench.trace_payloads import Template, build_templates
from bench.trace_steps import (
    drain,
    log,
    measure_bytes,
    measure_lookups,
    measure_puts,
    measure_throughput,
    start_daemon,
    top_up,
    wait_ready,
)
from bench.trace_stores import StoreSetup, store_setup


def run_store(
    setup: StoreSetup,
    args: argparse.Namespace,
    workdir: Path,
    server: Any,
    templates: list[Template],
    small: list[Template],
) -> StoreFigures:
    """Every measurement against one store; the daemon is always stopped."""
    run = start_daemon(setup, args, workdir, server)
    try:
        wait_ready(run)
        measure_throughput(run, templates)
        top_up(run, templates)
        measure_bytes(run)
        # Trace by id before the paced runs, over the data set just measured.
        measure_lookups(run, templates)
        measure_puts(run, templates, small)
        drain(run)
    finally:
        stop_process(run.process, 10)
    set_verdicts(run.figures)
    return run.figures


# --- report -----------------------------------------------------------------------------------


def _opt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def print_store(f: StoreFigures) -> None:
    print()
    print(f"== store: {f.store} ({f.url}) ==")
    rows: list[tuple[str, str, str, str]] = [
        ("spans/s acknowledged", f"{f.acked_per_s:,.0f}", "", ""),
        (
            "spans/s stored (first send to all indexed)",
            f"{f.stored_per_s:,.0f}",
            f">= {TARGET_STORED_PER_S:,}",
            f.verdicts["stored_per_s"],
        ),
        (
            "  spans, send s, indexed after s",
            f"{f.spans_acked:,} / {f.send_s:.1f} / {f.indexed_s:.1f}",
            "",
            "",
        ),
        ("export latency p50 / p99 (ms)", f"{f.p50_ms:.1f} / {f.p99_ms:.1f}", "", ""),
        ("daemon CPU s per M spans", f"{f.daemon_cpu_s_per_m:.2f}", "", ""),
        ("PostgreSQL CPU s per M spans", f"{f.postgres_cpu_s_per_m:.2f}", "", ""),
        ("moto CPU s per M spans", _opt(f.moto_cpu_s_per_m, ".2f"), "", ""),
        ("daemon peak RSS (MiB)", f"{f.peak_rss_mib:.0f}", "", ""),
        (
            "retried requests (UNAVAILABLE); attempts",
            f"{f.retried_requests:,}; {f.retries:,}"
            + (f"; {f.abandoned} unanswered at the end" if f.abandoned else ""),
            "",
            "",
        ),
        ("generator CPU share", "/".join(f"{s:.0%}" for s in f.generator_cpu_share), "", ""),
        (
            "stored bytes per span",
            f"{f.bytes_per_span:.1f}",
            f"<= {TARGET_BYTES_PER_SPAN:.0f}",
            f.verdicts["bytes_per_span"],
        ),
        (
            "  blocks",
            f"{f.block_bytes_per_span:.1f}  ({f.blocks:,} objects, {f.block_bytes / 2**20:,.1f}"
            " MiB)",
            "",
            "",
        ),
        (
            "  trace_index",
            f"{f.index_bytes_per_span:.1f}  ({f.index_rows:,} rows, {f.index_bytes / 2**20:,.1f}"
            " MiB)",
            "",
            "",
        ),
    ]
    for p in f.puts:
        rows.append(
            (
                f"PUTs/hour at {p.spans_per_s:,.0f} spans/s, {p.spans_per_trace}-span traces",
                f"{p.puts_per_hour:,.0f}",
                "",
                "",
            )
        )
        rows.append(
            (
                "  blocks in window; spans, KiB per block",
                f"{p.window_blocks} in {p.window_s:.1f} s; {p.spans_per_block:,.0f},"
                f" {p.bytes_per_block / 1024:,.0f}"
                + (f"; {p.retried_requests} retried" if p.retried_requests else ""),
                "",
                "",
            )
        )
    if f.lookup is not None:
        lk = f.lookup
        rows.append(
            (
                f"trace by id p50/p95/max (ms), {f.spans_stored:,} spans",
                f"{lk.p50_ms:.1f} / {lk.p95_ms:.1f} / {lk.max_ms:.1f}",
                f"p95 < {TARGET_LOOKUP_P95_MS:.0f}",
                f.verdicts["lookup_p95"],
            )
        )
        rows.append(
            (
                "  index SQL p50 (ms); frames per trace",
                f"{lk.index_sql_p50_ms:.1f}; {lk.frames_per_trace:.2f}",
                "",
                "",
            )
        )
        rows.append(("  lookups with the wrong span count", f"{lk.wrong} of {lk.lookups}", "", ""))
    if f.searches_ms:
        rows.append(("search, newest 20 of the last hour: p50 (ms)", "", "", ""))
        for kind, ms in f.searches_ms.items():
            rows.append((f"  {kind}", f"{ms:,.1f}", "", ""))
    if f.topup_spans:
        rows.append(("spans topped up for the lookups", f"{f.topup_spans:,}", "", ""))
        rows.append(("  retried requests (top-up)", f"{f.topup_retried_requests:,}", "", ""))
    rows.append(("SIGTERM drain (s); exit code", f"{f.drain_s:.1f}; {f.exit_code}", "", ""))
    for label, value, target, verdict in rows:
        print(f"{label:48}{value:>34}  {target:>10} {verdict}")
    for error in f.errors:
        print(f"ERROR: {error}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of throughput load")
    parser.add_argument("--store", choices=("file", "s3", "both"), default="both")
    parser.add_argument("--spans-for-lookup", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=200)
    parser.add_argument("--paced-duration", type=float, default=30.0, help="seconds per PUT run")
    parser.add_argument("--paced-rate", type=float, default=10_000, help="spans/s, PUT runs")
    parser.add_argument("--processes", type=int, default=2, help="sender processes")
    parser.add_argument("--streams", type=int, default=8, help="streams per sender process")
    parser.add_argument("--pool", type=int, default=64, help="request templates of each shape")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--tidegate", help="tidegate executable (default: beside python)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory and logs")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    args = parser.parse_args()
    if args.duration <= 0 or args.paced_duration <= 0 or args.lookups <= 0 or args.pool <= 0:
        parser.error("--duration, --paced-duration, --lookups and --pool must be positive")

    started = time.monotonic()
    templates = build_templates(args.pool, 8, args.seed)
    small = build_templates(args.pool, 2, args.seed)
    wire = sum(len(t.stamp(0)) for t in templates) / sum(t.spans for t in templates)
    log(
        f"built {2 * args.pool} request templates in {time.monotonic() - started:.1f} s;"
        f" {wire:.0f} bytes per span on the wire (8-span traces)"
    )
    kinds = ("file", "s3") if args.store == "both" else (args.store,)
    # Embedded PostgreSQL runs as another user when we are root: its parent must be traversable.
    workdir = Path(tempfile.mkdtemp(prefix="tidegate-bench-traces-", dir="/tmp"))
    os.chmod(workdir, 0o755)
    server: Any = None
    results: list[StoreFigures] = []
    try:
        from tidegate.database import start_embedded_server

        # With --keep the database stays too, for a look at what was stored.
        server = start_embedded_server(workdir / "pg", keep_data=args.keep)
        for kind in kinds:
            with store_setup(kind, workdir) as setup:
                results.append(run_store(setup, args, workdir, server, templates, small))
    finally:
        if server is not None:
            server.cleanup()
        if args.keep:
            log(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        print(
            json.dumps(
                {"wire_bytes_per_span": wire, "stores": [asdict(r) for r in results]}, indent=2
            )
        )
    else:
        print(
            f"\nworkload: 8-span traces of 2-3 services, 1,000 spans per request,"
            f" {wire:.0f} bytes per span on the wire; {args.processes} x {args.streams} streams"
        )
        for figures in results:
            print_store(figures)
    return 1 if any(r.errors for r in results) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        # Every process and the work directory were already cleaned up by the finally blocks.
        print("interrupted", file=sys.stderr)
        sys.exit(130)
