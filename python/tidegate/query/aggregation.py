"""The aggregations a bucketed query can ask for, parsed from their names."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from tidegate.errors import QueryError


class AggKind(enum.Enum):
    COUNT = "count"
    SUM = "sum"
    AVG = "avg"
    MIN = "min"
    MAX = "max"
    RATE = "rate"
    INCREASE = "increase"
    QUANTILE = "quantile"


@dataclass(frozen=True)
class Aggregation:
    """One aggregation; ``q`` is set for ``quantile`` only."""

    kind: AggKind
    q: float | None = None

    def __str__(self) -> str:
        return f"quantile({self.q:g})" if self.kind is AggKind.QUANTILE else self.kind.value


NAMES = ", ".join(k.value for k in AggKind)
_QUANTILE = re.compile(r"quantile\((?P<q>[^)]*)\)")
_PERCENTILE = re.compile(r"p(?P<digits>\d{1,4})")


def parse_aggregation(text: str, q: float | None = None) -> Aggregation:
    """Parse ``count``, ``sum``, ``avg``, ``min``, ``max``, ``rate``, ``increase``,
    ``quantile`` (with ``q``), ``quantile(0.99)``, or a percentile shorthand such as ``p99``
    or ``p999`` (0.999)."""
    name = text.strip().lower()
    if match := _QUANTILE.fullmatch(name):
        q = _parse_q(match["q"])
        name = "quantile"
    elif match := _PERCENTILE.fullmatch(name):
        digits = match["digits"]
        q = int(digits) / 10 ** len(digits)
        name = "quantile"
    try:
        kind = AggKind(name)
    except ValueError:
        raise QueryError(
            f"unknown aggregation {text!r}: use one of {NAMES}, quantile(q) or pNN"
        ) from None
    if kind is AggKind.QUANTILE:
        if q is None:
            raise QueryError("quantile needs q, e.g. quantile(0.99) or --q 0.99")
        if not 0.0 <= q <= 1.0:
            raise QueryError(f"quantile q must be within [0, 1], got {q}")
        return Aggregation(kind, q)
    if q is not None:
        raise QueryError(f"q applies to quantile only, not to {kind.value}")
    return Aggregation(kind)


def _parse_q(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise QueryError(f"quantile q must be a number, got {text!r}") from None
