# Scenario: t-digest of 1 M lognormal values as 60 one-minute windows; ours against fastdigest.
"""tidegate's t-digest (``tidegate._core.TDigest``) against ``fastdigest`` in the same run.

Data: 1,000,000 lognormal values (mu 1, sigma 1.5, fixed seed), split into 60 consecutive
windows of about 16,667 values, as minute rollups are. For each digest configuration:

- insert: 1 M values into one digest through the library's bulk call (ours ``add_many`` on an
  ``array("d")``; fastdigest ``batch_update`` on a list, the input its API takes), best of 3;
- merge: the 60 window digests (built beforehand) merged into one, then one quantile read so a
  lazy merge is paid for, best of 3;
- rank error |rank(estimate) - q| of the merged digest against the exact sorted data;
- bytes: ``to_bytes()`` of one window digest and of the merged digest (fastdigest's
  ``to_bytes`` is its own binary format; its ``to_dict`` as compact JSON is shown too).

    .venv/bin/python bench/bench_tdigest.py
"""

from __future__ import annotations

import bisect
import json
import random
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import fastdigest

from tidegate._core import TDigest

N = 1_000_000
WINDOWS = 60
QUANTILES = (0.5, 0.9, 0.99, 0.999)
ROUNDS = 3


@dataclass
class Result:
    name: str
    insert_mvalues_s: float
    merge_ms: float
    rank_errors: list[float]
    window_bytes: int
    merged_bytes: int
    note: str


def best_of(rounds: int, run: Callable[[], object]) -> float:
    """Fastest wall time of ``rounds`` runs, in seconds."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def rank_error(sorted_values: Sequence[float], estimate: float, q: float) -> float:
    """0 when q is within the ranks the exact data give ``estimate``, else the distance."""
    n = len(sorted_values)
    below = bisect.bisect_left(sorted_values, estimate) / n
    at_or_below = bisect.bisect_right(sorted_values, estimate) / n
    return max(below - q, q - at_or_below, 0.0)


def bench_ours(values: list[float], windows: list[list[float]], compression: float) -> Result:
    data = array("d", values)
    best = best_of(ROUNDS, lambda: TDigest(compression).add_many(data))
    parts = []
    for window in windows:
        part = TDigest(compression)
        part.add_many(array("d", window))
        parts.append(part)

    def merge() -> TDigest:
        merged = TDigest(compression)
        for part in parts:
            merged.merge(part)
        merged.quantile(0.5)
        return merged

    merge_s = best_of(ROUNDS, merge)
    merged = merge()
    return Result(
        name=f"tidegate δ={compression:g}",
        insert_mvalues_s=N / best / 1e6,
        merge_ms=merge_s * 1e3,
        rank_errors=[merged.quantile(q) for q in QUANTILES],
        window_bytes=len(parts[0].to_bytes()),
        merged_bytes=len(merged.to_bytes()),
        note=f"{merged.centroid_count} centroids",
    )


def bench_fastdigest(values: list[float], windows: list[list[float]], max_centroids: int) -> Result:
    def insert() -> None:
        fastdigest.TDigest(max_centroids=max_centroids).batch_update(values)

    best = best_of(ROUNDS, insert)
    parts = []
    for window in windows:
        part = fastdigest.TDigest(max_centroids=max_centroids)
        part.batch_update(window)
        parts.append(part)

    def merge() -> Any:
        merged = fastdigest.merge_all(parts, max_centroids=max_centroids)
        merged.quantile(0.5)
        return merged

    merge_s = best_of(ROUNDS, merge)
    merged = merge()
    as_json = json.dumps(merged.to_dict(), separators=(",", ":"))
    return Result(
        name=f"fastdigest max_centroids={max_centroids}",
        insert_mvalues_s=N / best / 1e6,
        merge_ms=merge_s * 1e3,
        rank_errors=[merged.quantile(q) for q in QUANTILES],
        window_bytes=len(parts[0].to_bytes()),
        merged_bytes=len(merged.to_bytes()),
        note=f"{merged.n_centroids} centroids, to_dict JSON {len(as_json)} B",
    )


def main() -> None:
    rng = random.Random(20_240_601)
    values = [rng.lognormvariate(1.0, 1.5) for _ in range(N)]
    size = -(-N // WINDOWS)
    windows = [values[i : i + size] for i in range(0, N, size)]
    sorted_values = sorted(values)
    results = [
        bench_ours(values, windows, 100.0),
        bench_ours(values, windows, 200.0),
        bench_fastdigest(values, windows, 100),
        bench_fastdigest(values, windows, 1000),
    ]
    header = (
        f"{'digest':<28} {'insert M/s':>10} {'merge 60 ms':>11} "
        + " ".join(f"{'err p' + format(q * 100, 'g'):>9}" for q in QUANTILES)
        + f" {'B/window':>9} {'B/merged':>9}  notes"
    )
    print(f"{N:,} lognormal values, {WINDOWS} windows of {size:,}; rank errors of the merge")
    print(header)
    for r in results:
        errors = " ".join(
            f"{rank_error(sorted_values, e, q):>9.6f}"
            for e, q in zip(r.rank_errors, QUANTILES, strict=True)
        )
        print(
            f"{r.name:<28} {r.insert_mvalues_s:>10.1f} {r.merge_ms:>11.2f} {errors}"
            f" {r.window_bytes:>9} {r.merged_bytes:>9}  {r.note}"
        )


if __name__ == "__main__":
    main()
