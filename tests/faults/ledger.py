"""What the generator sent and what it was told: the ground truth the checker compares with.

A stamp is ``(generator, sequence)``: every point and span carries one, unique within its
signal. A batch is one Export request; its stamps are ``first_seq .. first_seq + count - 1``.
"""

from __future__ import annotations

import enum
import math
import threading
from collections import Counter
from dataclasses import dataclass, field

import grpc

METRICS = "metrics"
TRACES = "traces"


class Outcome(enum.Enum):
    ACKNOWLEDGED = "acknowledged"  # OK (maybe with partial_success rejections)
    REJECTED = "rejected"  # a non-retryable error
    UNKNOWN = "unknown"  # retried until the deadline, then given up


@dataclass(frozen=True)
class BatchRecord:
    signal: str
    generator: int
    batch: int
    first_seq: int
    count: int
    outcome: Outcome
    attempts: int
    rejected_items: int = 0  # partial_success rejected points or spans
    last_code: str = "OK"

    def stamps(self) -> range:
        return range(self.first_seq, self.first_seq + self.count)


@dataclass(frozen=True)
class Answer:
    """One non-OK answer to one attempt."""

    signal: str
    generator: int
    code: grpc.StatusCode
    latency: float  # seconds from sending to the answer
    retry_delay: float | None  # RetryInfo's retry_delay, when the status carried one
    at: float  # time.monotonic() of the answer
    details: str = ""


@dataclass
class Ledger:
    """Thread-safe record of every batch's outcome and every non-OK answer."""

    batches: list[BatchRecord] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, batch: BatchRecord) -> None:
        with self._lock:
            self.batches.append(batch)

    def observe(self, answer: Answer) -> None:
        with self._lock:
            self.answers.append(answer)

    def of(self, signal: str, outcome: Outcome | None = None) -> list[BatchRecord]:
        with self._lock:
            return [
                b
                for b in self.batches
                if b.signal == signal and (outcome is None or b.outcome is outcome)
            ]

    def acknowledged_items(self, signal: str) -> int:
        return sum(b.count for b in self.of(signal, Outcome.ACKNOWLEDGED))

    def answers_between(self, start: float, end: float) -> list[Answer]:
        with self._lock:
            return [a for a in self.answers if start <= a.at <= end]

    def refusals(self, signal: str | None = None) -> list[Answer]:
        """Answers that say "not now": UNAVAILABLE and RESOURCE_EXHAUSTED."""
        refusing = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED)
        with self._lock:
            return [
                a
                for a in self.answers
                if a.code in refusing and (signal is None or a.signal == signal)
            ]

    def summary(self) -> str:
        lines = []
        for signal in (METRICS, TRACES):
            outcomes = Counter(b.outcome.value for b in self.of(signal))
            if outcomes:
                lines.append(f"{signal}: batches {dict(outcomes)}")
        with self._lock:
            codes = Counter(f"{a.signal} {a.code.name}" for a in self.answers)
            delays = [a.retry_delay for a in self.answers if a.retry_delay is not None]
        lines.append(f"non-OK answers {dict(codes)}; with RetryInfo {len(delays)}")
        if delays:
            lines.append(f"RetryInfo delays: min {min(delays):.3f} s, max {max(delays):.3f} s")
        return "; ".join(lines)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]
