"""CPU time of the Rust core per request, measured in the thread that ingests.

Scenario: a pool of requests of the mixed workload of ``otlp_payloads`` (1,000 points each,
10,000 series), ingested into a bare ``MetricsCore`` (no daemon, no PostgreSQL, no spool) after
a warm-up that makes every series known, with a ``take_batch`` every ``--batch-every``
requests as the daemon's writer would. It prints the thread's CPU time per request: on a
shared machine CPU time moves far less between runs than wall time, so two builds compare
best by alternating runs of this script (``PYTHONPATH`` of a worktree for the other build).

    .venv/bin/python bench/core_cpu.py --requests 6000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    # Run as `python bench/core_cpu.py`: make the `bench` package importable.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.otlp_payloads import build_requests
from tidegate._core import CoreLimits, MetricsCore, RollupSettings

# Requests and their points are all timed "now" against a fixed clock: windows stay open.
NOW_NS = 1_765_000_000_000_000_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=6000, help="requests timed")
    parser.add_argument("--pool", type=int, default=100, help="distinct requests replayed")
    parser.add_argument("--series", type=int, default=10_000)
    parser.add_argument("--batch-every", type=int, default=100)
    args = parser.parse_args()
    pool = [p.body for p in build_requests(args.pool, series=args.series, now_ns=NOW_NS)]
    core = MetricsCore(CoreLimits(), RollupSettings())
    for body in pool[: -(-args.series // 1000)]:
        core.ingest(body, NOW_NS)
    core.take_batch(NOW_NS)
    started = time.thread_time()
    for i in range(args.requests):
        core.ingest(pool[i % len(pool)], NOW_NS)
        if i % args.batch_every == args.batch_every - 1:
            core.take_batch(NOW_NS)
    per_request = (time.thread_time() - started) / args.requests
    print(f"core CPU per request of 1,000 points: {per_request * 1e6:.0f} µs")


if __name__ == "__main__":
    main()
