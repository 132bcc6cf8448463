"""Memory that open hours hold per series as the windows of one hour close into them.

Scenario: the mixed workload of ``otlp_payloads`` with ``--series`` series, ``--per-window``
points per series in each of the 60 one-minute windows of one hour, ingested into a bare
``MetricsCore`` (no daemon, no PostgreSQL); after each window a ``take_batch`` writes its
points and closes it into its hour, and every ``--hour-flush-windows`` windows one also writes
every open hour as a partial row, as the daemon's flushes do (``rollups.hour_flush_seconds``,
300 s by default, is five windows). It prints the RSS growth per series since the first window
closed, every ten windows: what the open hours accumulate (their digests buffer the centroids
of every window merged in). With ``--hour-flush-windows 60`` hours are written only when
they end.

    .venv/bin/python bench/hour_memory.py --series 10000 --per-window 100
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

import psutil

if __package__ in (None, ""):
    # Run as `python bench/hour_memory.py`: make the `bench` package importable.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.otlp_payloads import build_requests
from tidegate._core import CoreLimits, MetricsCore, RollupSettings

NS = 1_000_000_000
WINDOW_NS = 60 * NS
HOUR_NS = 3600 * NS
POINTS_PER_REQUEST = 1000


def window_requests(series: int, per_window: int, window: int, end_ns: int) -> list[bytes]:
    """The requests of one window: ``per_window`` points per series, spread over its minute."""
    n_requests = max(1, series * per_window // POINTS_PER_REQUEST)
    payloads = build_requests(
        n_requests,
        POINTS_PER_REQUEST,
        series,
        seed=window,
        step_ns=(WINDOW_NS - NS) // n_requests,
        now_ns=end_ns - NS,
    )
    return [p.body for p in payloads]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=10_000)
    parser.add_argument("--per-window", type=int, default=100)
    parser.add_argument("--hour-flush-windows", type=int, default=5)
    args = parser.parse_args()
    process = psutil.Process()
    # An hour that ended two hours ago, so that every window closes at once when asked.
    hour_start = (time.time_ns() // HOUR_NS - 2) * HOUR_NS
    core = MetricsCore(CoreLimits(), RollupSettings())
    lateness_ns = 61 * NS
    base = 0

    def growth() -> str:
        delta = process.memory_info().rss - base
        return f"{delta / 2**20:8.0f} MiB {delta / args.series:8.0f} B/series"

    print(
        f"series {args.series:,}, points per series per window {args.per_window:,},"
        f" open hours written every {args.hour_flush_windows} windows"
    )
    for window in range(60):
        end_ns = hour_start + (window + 1) * WINDOW_NS
        requests = window_requests(args.series, args.per_window, window, end_ns)
        for request in requests:
            core.ingest(request, end_ns)
        flush_hours = (window + 1) % args.hour_flush_windows == 0
        batch = core.take_batch(end_ns + lateness_ns, flush_all=False, flush_hours=flush_hours)
        del batch, requests
        gc.collect()
        if window == 0:
            base = process.memory_info().rss
        elif (window + 1) % 10 == 0:
            print(f"open hours after {window + 1:2} windows closed   {growth()}", flush=True)
    batch = core.take_batch(hour_start + 2 * HOUR_NS, flush_all=True, flush_hours=True)
    del batch
    gc.collect()
    print(f"after the hour is written                {growth()}")


if __name__ == "__main__":
    main()
