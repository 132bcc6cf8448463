"""Memory per active series in the Rust core, measured where it is held.

Scenario: the mixed workload of ``otlp_payloads`` with ``--series`` series (default 1 M), one
point per series, ingested into a bare ``MetricsCore`` (no daemon, no PostgreSQL, no spool), then
one ``take_batch`` that writes every series and closes every window. It prints the RSS after
each step divided by the number of series: what the registry and open windows hold, and what a
flush that writes them all needs on top (the COPY payloads, built whole before a COPY starts).

    .venv/bin/python bench/series_memory.py --series 1000000
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

import psutil

if __package__ in (None, ""):
    # Run as `python bench/series_memory.py`: make the `bench` package importable.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.otlp_payloads import build_requests
from tidegate._core import CopyPayload, CoreLimits, MetricsCore, RollupSettings

MIB = 1024 * 1024
NS = 1_000_000_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=1_000_000)
    parser.add_argument("--points-per-request", type=int, default=1000)
    args = parser.parse_args()
    process = psutil.Process()
    n_requests = args.series // args.points_per_request
    payloads = build_requests(n_requests, args.points_per_request, args.series)
    requests = [p.body for p in payloads]
    gc.collect()
    core = MetricsCore(CoreLimits(), RollupSettings())
    start = process.memory_info().rss
    now = time.time_ns()
    for request in requests:
        core.ingest(request, now)
    ingested = process.memory_info().rss
    batch = core.take_batch(now + 3 * 3600 * NS, flush_all=True, flush_hours=True)
    flushed = process.memory_info().rss
    payload = sum(
        len(getattr(batch, name))
        for name in dir(batch)
        if name.endswith("_copy") and isinstance(getattr(batch, name), CopyPayload)
    )
    del batch
    gc.collect()
    after = process.memory_info().rss
    n = args.series

    def per_series(delta: int) -> str:
        return f"{delta / MIB:8.0f} MiB {delta / n:8.0f} B/series"

    print(f"series {n:,}, known {core.known_series:,}, requests {len(requests):,}")
    print(f"registry + open windows + buffered points   {per_series(ingested - start)}")
    print(f"+ the flush that writes everything (peak)   {per_series(flushed - start)}")
    print(f"  of which COPY payloads                    {per_series(payload)}")
    print(f"after the batch is released                 {per_series(after - start)}")


if __name__ == "__main__":
    main()
