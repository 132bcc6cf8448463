# Scenario: spool appends of 1 KB and 100 KB records by 1, 8 and 64 concurrent appenders.
"""Appends per second through ``tidegate.spool.Spool``: fsync on with ``O_DIRECT`` (the
default), fsync on through the page cache, and fsync off.

Each run opens a fresh spool in a temporary directory (on the filesystem of ``--dir``, the
system temporary directory by default), starts N appender tasks on one event loop, each
awaiting one append at a time with its own run of seqs, for ``--seconds``; then closes the
spool and deletes the directory. Reported per configuration, from the median run of
``--runs`` by appends/s:

- appends/s and MB/s of payload acknowledged;
- appends/fsync: appends per group written and fsynced, which is how much group commit
  shares one fsync; with fsync off there is none;
- p50 and p99 latency of one append, from the call until it returns.

    .venv/bin/python bench/bench_spool.py
    .venv/bin/python bench/bench_spool.py --seconds 3 --dir /mnt/nvme/tmp
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tidegate.spool import Spool, SpoolRecord

RECORD_SIZES = (1024, 100 * 1024)
APPENDERS = (1, 8, 64)


@dataclass
class Run:
    appends: int
    seconds: float
    fsyncs: int
    latencies: list[float]

    @property
    def rate(self) -> float:
        return self.appends / self.seconds


async def appends(spool: Spool, payload: bytes, first: int, step: int, until: float) -> list[float]:
    """One appender: seqs first, first + step, ... until the deadline; the latency of each."""
    latencies = []
    seq = first
    while time.perf_counter() < until:
        record = SpoolRecord(seq, time.time_ns(), "bench", bytes(16), payload)
        start = time.perf_counter()
        await spool.append(record)
        latencies.append(time.perf_counter() - start)
        seq += step
    return latencies


# Mode name: (fsync, direct_io).
MODES = {"direct": (True, True), "cache": (True, False), "off": (False, False)}


def run_once(record_bytes: int, appenders: int, mode: str, seconds: float, parent: str) -> Run:
    payload = os.urandom(record_bytes)
    fsync, direct_io = MODES[mode]
    with tempfile.TemporaryDirectory(prefix="bench-spool-", dir=parent) as directory:
        spool = Spool(Path(directory), fsync=fsync, direct_io=direct_io)

        async def main() -> tuple[list[list[float]], float]:
            start = time.perf_counter()
            until = start + seconds
            tasks = [
                appends(spool, payload, first, appenders, until)
                for first in range(1, appenders + 1)
            ]
            per_appender = await asyncio.gather(*tasks)
            elapsed = time.perf_counter() - start
            await spool.close()
            return per_appender, elapsed

        per_appender, elapsed = asyncio.run(main())
    latencies = sorted(latency for group in per_appender for latency in group)
    return Run(len(latencies), elapsed, spool.groups_committed if fsync else 0, latencies)


def percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="length of one run (1.0)")
    parser.add_argument(
        "--runs", type=int, default=3, help="runs per configuration; the median is shown (3)"
    )
    parser.add_argument(
        "--dir", default=tempfile.gettempdir(), help="where the spool directories are made"
    )
    args = parser.parse_args()

    print(
        f"spool in {args.dir}, {args.seconds:g} s per run, median of {args.runs} runs by appends/s"
    )
    print(
        f"{'record':>7} {'appenders':>9} {'mode':>6} {'appends/s':>10} {'MB/s':>8}"
        f" {'appends/fsync':>13} {'p50 ms':>8} {'p99 ms':>8}"
    )
    for mode in MODES:
        for record_bytes in RECORD_SIZES:
            for appenders in APPENDERS:
                runs = [
                    run_once(record_bytes, appenders, mode, args.seconds, args.dir)
                    for _ in range(args.runs)
                ]
                median = statistics.median_low([run.rate for run in runs])
                run = next(run for run in runs if run.rate == median)
                per_fsync = f"{run.appends / run.fsyncs:.1f}" if run.fsyncs else "-"
                print(
                    f"{record_bytes // 1024:>4} KB {appenders:>9} {mode:>6}"
                    f" {run.rate:>10,.0f} {run.rate * record_bytes / 1e6:>8.1f} {per_fsync:>13}"
                    f" {percentile(run.latencies, 0.5) * 1e3:>8.3f}"
                    f" {percentile(run.latencies, 0.99) * 1e3:>8.3f}"
                )


if __name__ == "__main__":
    main()
