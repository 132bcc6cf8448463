"""Output formats: exact table, JSON and CSV text for known results, and the sparkline."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json

import pytest

from tidegate.errors import QueryError
from tidegate.query.render import FORMATS, render, sparkline
from tidegate.query.result import QueryResult, SeriesResult
from tidegate.query.selector import parse_selector

T0 = dt.datetime(2026, 11, 27, 10, 0, tzinfo=dt.UTC)
TIMES = [T0 + dt.timedelta(minutes=i) for i in range(4)]
METRIC = "http.server.request.duration"

ONE = QueryResult(
    METRIC,
    "sum",
    60,
    [SeriesResult({"service.name": "api", "code": "200"}, TIMES, [1.2, 9.8, None, 123456789.0])],
)
TWO = QueryResult(
    METRIC,
    "raw",
    0,
    [
        SeriesResult({"code": "200"}, TIMES[:2], [0.5, None]),
        SeriesResult({"host": 'a"b'}, TIMES[:1], [-3.0]),
    ],
)
EMPTY = QueryResult(METRIC, "sum", 60, [])
NO_POINTS = QueryResult("m", "raw", 0, [SeriesResult({})])
MS, US = T0 + dt.timedelta(milliseconds=1500), T0 + dt.timedelta(microseconds=7)


def raw(times: list[dt.datetime], values: list[float | None], **labels: str) -> QueryResult:
    """A result holding one raw series of metric ``m``."""
    return QueryResult("m", "raw", 0, [SeriesResult(labels, times, values)])


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (
            ONE,
            'http.server.request.duration{code="200", service.name="api"}\n'
            "▁▁ █  min 1.2 max 1.23457e+08\n"
            "2026-11-27T10:00:00Z          1.2\n"
            "2026-11-27T10:01:00Z          9.8\n"
            "2026-11-27T10:02:00Z            -\n"
            "2026-11-27T10:03:00Z  1.23457e+08\n",
        ),
        (
            TWO,
            'http.server.request.duration{code="200"}\n'
            "2026-11-27T10:00:00Z  0.5\n"
            "2026-11-27T10:01:00Z    -\n"
            "\n"
            'http.server.request.duration{host="a\\"b"}\n'
            "2026-11-27T10:00:00Z  -3\n",
        ),
        (EMPTY, "http.server.request.duration: no series\n"),
        (NO_POINTS, "m\n(no points)\n"),
        (
            raw([], [], **{"odd name": "x\ty", "a": ""}),
            'm{a="", "odd name"="x\\ty"}\n(no points)\n',
        ),
        (raw(TIMES[:2], [None, 7.0]), "m\n2026-11-27T10:00:00Z  -\n2026-11-27T10:01:00Z  7\n"),
        (
            raw([MS, US], [1 / 3, float("nan")]),
            "m\n2026-11-27T10:00:01.500Z     0.333333\n2026-11-27T10:00:00.000007Z       nan\n",
        ),
    ],
)
def test_table(result: QueryResult, expected: str) -> None:
    assert render(result, "table") == expected


def test_table_converts_times_to_utc() -> None:
    paris = dt.timezone(dt.timedelta(hours=1))
    assert render(raw([T0.astimezone(paris)], [2.0]), "table") == "m\n2026-11-27T10:00:00Z  2\n"


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (
            ONE,
            {
                "metric": METRIC,
                "aggregation": "sum",
                "resolution_seconds": 60,
                "series": [
                    {
                        "labels": {"code": "200", "service.name": "api"},
                        "points": [
                            ["2026-11-27T10:00:00Z", 1.2],
                            ["2026-11-27T10:01:00Z", 9.8],
                            ["2026-11-27T10:02:00Z", None],
                            ["2026-11-27T10:03:00Z", 123456789.0],
                        ],
                    }
                ],
            },
        ),
        (EMPTY, {"metric": METRIC, "aggregation": "sum", "resolution_seconds": 60, "series": []}),
        (
            raw(TIMES[:3], [float("nan"), float("inf"), float("-inf")]),
            {
                "metric": "m",
                "aggregation": "raw",
                "resolution_seconds": 0,
                "series": [
                    {
                        "labels": {},
                        "points": [
                            ["2026-11-27T10:00:00Z", "NaN"],
                            ["2026-11-27T10:01:00Z", "+Inf"],
                            ["2026-11-27T10:02:00Z", "-Inf"],
                        ],
                    }
                ],
            },
        ),
    ],
)
def test_json(result: QueryResult, expected: dict[str, object]) -> None:
    text = render(result, "json")
    assert text.endswith("}\n")
    assert text.count("\n") == 1
    assert json.loads(text) == expected
    assert list(json.loads(text)) == ["metric", "aggregation", "resolution_seconds", "series"]


def test_json_text_is_deterministic() -> None:
    assert render(EMPTY, "json") == (
        '{"metric": "http.server.request.duration", "aggregation": "sum", '
        '"resolution_seconds": 60, "series": []}\n'
    )
    shuffled = raw(TIMES[:1], [1.0], b="2", a="1")
    assert '"labels": {"a": "1", "b": "2"}' in render(shuffled, "json")


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (
            ONE,
            "time,code,service.name,value\n"
            "2026-11-27T10:00:00Z,200,api,1.2\n"
            "2026-11-27T10:01:00Z,200,api,9.8\n"
            "2026-11-27T10:02:00Z,200,api,\n"
            "2026-11-27T10:03:00Z,200,api,123456789.0\n",
        ),
        (
            TWO,
            "time,code,host,value\n"
            "2026-11-27T10:00:00Z,200,,0.5\n"
            "2026-11-27T10:01:00Z,200,,\n"
            '2026-11-27T10:00:00Z,,"a""b",-3.0\n',
        ),
        (EMPTY, "time,value\n"),
        (NO_POINTS, "time,value\n"),
    ],
)
def test_csv(result: QueryResult, expected: str) -> None:
    text = render(result, "csv")
    assert text == expected
    assert len(list(csv.reader(io.StringIO(text)))) == expected.count("\n")


def test_csv_keeps_full_precision() -> None:
    assert (
        render(raw(TIMES[:1], [0.1 + 0.2]), "csv")
        == "time,value\n2026-11-27T10:00:00Z,0.30000000000000004\n"
    )


@pytest.mark.parametrize("fmt", ["", "TABLE", "yaml", "tsv"])
def test_unknown_format(fmt: str) -> None:
    with pytest.raises(QueryError, match=f"unknown output format '{fmt}'; expected one of table"):
        render(ONE, fmt)


def test_formats_constant() -> None:
    assert FORMATS == ("table", "json", "csv")
    for fmt in FORMATS:
        assert render(ONE, fmt).endswith("\n")


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], ""),
        ([1, 2, 3, 4, 5, 6, 7, 8], "▁▂▃▄▅▆▇█"),
        ([8, 7, 6, 5, 4, 3, 2, 1], "█▇▆▅▄▃▂▁"),
        ([0.0, 10.0, 5.0], "▁█▅"),
        ([3.0, 3.0, 3.0], "▄▄▄"),
        ([3.0], "▄"),
        ([None, 1.0, None, 2.0], " ▁ █"),
        ([None, None], "  "),
        ([2.0, None, 2.0], "▄ ▄"),
        ([1.0, float("nan"), 2.0, float("inf")], "▁ █ "),
        ([-1e308, 1e308, 0.0], "▁█▅"),
        ([-5.0, -1.0], "▁█"),
    ],
)
def test_sparkline(values: list[float | None], expected: str) -> None:
    assert sparkline(values) == expected


@pytest.mark.parametrize(
    ("values", "width", "expected"),
    [
        (list(range(80)), 80, "".join("▁▂▃▄▅▆▇█"[i // 10] for i in range(80))),
        ([float(i) for i in range(200)], 10, "▁▁▂▃▄▅▆▇██"),
        ([1.0, 1.0, 9.0, 9.0], 2, "▁█"),
        ([1.0, 3.0, None, None, 9.0, None], 3, "▁ █"),
        ([1.0, 5.0, 9.0], 1, "▄"),
    ],
)
def test_sparkline_downsamples_by_averaging(
    values: list[float | None], width: int, expected: str
) -> None:
    assert sparkline(values, width) == expected


def test_sparkline_default_width_caps_long_input() -> None:
    assert len(sparkline([float(i % 7) for i in range(1000)])) == 80


def test_sparkline_rejects_zero_width() -> None:
    with pytest.raises(ValueError, match="width must be at least 1"):
        sparkline([1.0], 0)


def test_table_header_parses_back_as_a_selector() -> None:
    labels = {"service.name": "api", "odd name": 'q"\n'}
    result = QueryResult(METRIC, "raw", 0, [SeriesResult(labels, TIMES[:1], [1.0])])
    header = render(result, "table").splitlines()[0]
    selector = parse_selector(header)
    assert selector.metric == METRIC
    assert {m.label: m.value for m in selector.matchers} == labels
