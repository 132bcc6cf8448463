"""Aggregation names → `Aggregation`, and the refusals."""

from __future__ import annotations

import pytest

from tidegate.errors import QueryError
from tidegate.query.aggregation import AggKind, Aggregation, parse_aggregation


@pytest.mark.parametrize(
    ("text", "q", "expected"),
    [
        ("count", None, Aggregation(AggKind.COUNT)),
        (" Sum ", None, Aggregation(AggKind.SUM)),
        ("avg", None, Aggregation(AggKind.AVG)),
        ("rate", None, Aggregation(AggKind.RATE)),
        ("increase", None, Aggregation(AggKind.INCREASE)),
        ("quantile", 0.9, Aggregation(AggKind.QUANTILE, 0.9)),
        ("quantile(0.99)", None, Aggregation(AggKind.QUANTILE, 0.99)),
        ("p50", None, Aggregation(AggKind.QUANTILE, 0.5)),
        ("p99", None, Aggregation(AggKind.QUANTILE, 0.99)),
        ("p999", None, Aggregation(AggKind.QUANTILE, 0.999)),
        ("quantile(0)", None, Aggregation(AggKind.QUANTILE, 0.0)),
    ],
)
def test_names(text: str, q: float | None, expected: Aggregation) -> None:
    assert parse_aggregation(text, q) == expected


@pytest.mark.parametrize(
    ("text", "q", "message"),
    [
        ("median", None, "unknown aggregation 'median'"),
        ("quantile", None, "quantile needs q"),
        ("quantile(x)", None, "must be a number"),
        ("quantile(1.01)", None, "within [0, 1]"),
        ("quantile", -0.1, "within [0, 1]"),
        ("sum", 0.5, "q applies to quantile only"),
        ("", None, "unknown aggregation"),
    ],
)
def test_refusals(text: str, q: float | None, message: str) -> None:
    with pytest.raises(QueryError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_aggregation(text, q)


def test_names_render_back() -> None:
    assert str(parse_aggregation("p99")) == "quantile(0.99)"
    assert str(parse_aggregation("rate")) == "rate"
