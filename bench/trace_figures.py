"""The figures of the trace benchmark for one store, its targets and their PASS/MISS verdicts.

``StoreFigures`` is what the report table prints and what ``--json`` dumps (one object per
store); ``set_verdicts`` compares it with the targets: stored spans/s, stored bytes per span
and trace-by-id p95 latency.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.trace_measures import LookupFigures

TARGET_STORED_PER_S = 100_000
TARGET_BYTES_PER_SPAN = 60.0
TARGET_LOOKUP_P95_MS = 50.0


@dataclass
class PutFigures:
    spans_per_trace: int
    spans_per_s: float
    window_s: float
    window_blocks: int
    puts_per_hour: float
    blocks_total: int  # objects written by the phase, the last (age-cut) block included
    bytes_per_block: float
    spans_per_block: float
    retried_requests: int


@dataclass
class StoreFigures:
    store: str
    url: str
    # 1. throughput
    requests: int = 0
    spans_acked: int = 0
    send_s: float = 0.0
    indexed_s: float = 0.0
    acked_per_s: float = 0.0
    stored_per_s: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    retried_requests: int = 0
    retries: int = 0
    abandoned: int = 0
    daemon_cpu_s_per_m: float = 0.0
    postgres_cpu_s_per_m: float = 0.0
    moto_cpu_s_per_m: float | None = None
    peak_rss_mib: float = 0.0
    generator_cpu_share: list[float] = field(default_factory=list)
    # top-up for the lookups
    topup_spans: int = 0
    topup_retried_requests: int = 0
    # 2. bytes
    spans_stored: int = 0
    index_rows: int = 0
    blocks: int = 0
    block_bytes: int = 0
    index_bytes: int = 0
    block_bytes_per_span: float = 0.0
    index_bytes_per_span: float = 0.0
    bytes_per_span: float = 0.0
    # 3. PUTs
    puts: list[PutFigures] = field(default_factory=list)
    # 4. lookups, and searches of the last hour (median ms by kind)
    lookup: LookupFigures | None = None
    searches_ms: dict[str, float] = field(default_factory=dict)
    # the end
    drain_s: float = 0.0
    exit_code: int = 0
    errors: list[str] = field(default_factory=list)
    verdicts: dict[str, str] = field(default_factory=dict)


def set_verdicts(f: StoreFigures) -> None:
    def verdict(ok: bool) -> str:
        return "PASS" if ok else "MISS"

    f.verdicts = {
        "stored_per_s": verdict(f.stored_per_s >= TARGET_STORED_PER_S),
        "bytes_per_span": verdict(f.bytes_per_span <= TARGET_BYTES_PER_SPAN),
    }
    if f.lookup is not None:
        f.verdicts["lookup_p95"] = verdict(f.lookup.p95_ms < TARGET_LOOKUP_P95_MS)
