"""What a fault scenario found: per-signal counts against the ledger, rollup consistency,
and the raw state of the trace store; :meth:`FaultReport.assert_exactly_once` fails with
every non-zero count and the whole report."""

from __future__ import annotations

from dataclasses import dataclass, field

from tests.faults.blocks import RAW_DECODER


@dataclass
class SignalCounts:
    """One signal's acknowledged items against what storage holds."""

    signal: str
    acknowledged: int = 0
    rejected: int = 0  # partial_success rejections inside acknowledged batches
    refused_batches: int = 0  # non-retryable errors: nothing promised
    unknown_batches: int = 0  # given up: nothing promised
    stored_acknowledged: int = 0
    missing: int = 0
    duplicates: int = 0  # extra copies, over every stamp
    stored_unacknowledged: int = 0  # from unknown or refused batches: allowed
    unexpected: int = 0  # stored stamps never sent
    missing_examples: list[str] = field(default_factory=list)
    duplicate_examples: list[str] = field(default_factory=list)


@dataclass
class RollupCounts:
    series: int = 0
    raw_key_duplicates: int = 0  # extra rows of one (series, time) in point_chunks
    window_excess: int = 0
    hour_excess: int = 0
    # Not asserted: an hour's row is written once the hour closes (or at shutdown), so points of
    # the open hour lack one until then, and a crash loses the open hour's aggregate.
    hour_deficit: int = 0
    window_deficit: int = 0


@dataclass
class TraceStorage:
    listed_blocks: int = 0
    indexed_blocks: int = 0
    orphan_blocks: list[str] = field(default_factory=list)
    unindexed_spans: int = 0  # span copies in frames no index row points to
    listed_duplicates: int = 0  # extra span copies over every frame of every block
    index_missing_blocks: list[str] = field(default_factory=list)
    decoder: str = RAW_DECODER


@dataclass
class FaultReport:
    metrics: SignalCounts
    rollups: RollupCounts
    traces: SignalCounts
    storage: TraceStorage
    ledger: str

    @property
    def missing(self) -> int:
        return self.metrics.missing + self.traces.missing

    @property
    def duplicates(self) -> int:
        r = self.rollups
        rollups = r.raw_key_duplicates + r.window_excess + r.hour_excess
        traces = self.traces.duplicates + self.storage.listed_duplicates
        return self.metrics.duplicates + rollups + traces

    @property
    def unindexed_spans(self) -> int:
        return self.storage.unindexed_spans

    def problems(self) -> list[str]:
        m, t, r, s = self.metrics, self.traces, self.rollups, self.storage
        checks = {
            "metrics missing": m.missing,
            "metrics duplicates": m.duplicates,
            "metrics unexpected": m.unexpected,
            "points with a repeated (series, time)": r.raw_key_duplicates,
            "rollup window count above raw points": r.window_excess,
            "rollup hour count above raw points": r.hour_excess,
            "rollup window count below raw points": r.window_deficit,
            # The daemon is stopped before the check, and a stop writes every open hour.
            "rollup hour count below raw points": r.hour_deficit,
            "spans missing": t.missing,
            "spans duplicated in the index": t.duplicates,
            "spans unexpected": t.unexpected,
            "span copies beyond one across all blocks": s.listed_duplicates,
            "unindexed spans": s.unindexed_spans,
            "orphan blocks": len(s.orphan_blocks),
            "index rows naming a missing block": len(s.index_missing_blocks),
        }
        return [f"{name}: {value}" for name, value in checks.items() if value]

    def describe(self) -> str:
        lines = ["fault report:"]
        for counts in (self.metrics, self.traces):
            lines.append(
                f"  {counts.signal}: acknowledged {counts.acknowledged}, stored "
                f"{counts.stored_acknowledged}, missing {counts.missing}, duplicates "
                f"{counts.duplicates}, partial rejections {counts.rejected}, refused batches "
                f"{counts.refused_batches}, unknown batches {counts.unknown_batches} "
                f"({counts.stored_unacknowledged} of their items stored), unexpected "
                f"{counts.unexpected}"
            )
            if counts.missing_examples:
                lines.append(f"    missing e.g. {', '.join(counts.missing_examples)}")
            if counts.duplicate_examples:
                lines.append(f"    duplicated e.g. {', '.join(counts.duplicate_examples)}")
        r, s = self.rollups, self.storage
        lines.append(
            f"  rollups over {r.series} series: window excess {r.window_excess}, hour excess "
            f"{r.hour_excess}, window deficit {r.window_deficit}, hour deficit "
            f"{r.hour_deficit}; repeated (series, time) "
            f"{r.raw_key_duplicates}"
        )
        lines.append(
            f"  blocks: {s.listed_blocks} listed, {s.indexed_blocks} indexed, orphans "
            f"{len(s.orphan_blocks)} {s.orphan_blocks[:3]}, unindexed spans "
            f"{s.unindexed_spans}, copies beyond one {s.listed_duplicates}, index rows "
            f"naming missing blocks {len(s.index_missing_blocks)} (decoder: {s.decoder})"
        )
        lines.append(f"  ledger: {self.ledger}")
        return "\n".join(lines)

    def assert_exactly_once(self) -> None:
        """AssertionError listing every non-zero count, with the whole report."""
        problems = self.problems()
        assert not problems, "; ".join(problems) + "\n" + self.describe()
