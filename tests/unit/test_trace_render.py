"""Trace rendering: span order and depths, the waterfall text and bars, durations, search table."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from tidegate.trace_render import SpanRow, flatten, format_duration_ns, search_table, waterfall

TRACE = "0af7651916cd43dd8448eb211c80319c"
T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z in nanoseconds
MS = 1_000_000


def sid(short: str) -> str:
    """A 16-hex-digit span id made from a two-character one, e.g. ``a1a1a1a1a1a1a1a1``."""
    return short * 8


def span(
    short: str,
    name: str,
    parent: str = "",
    start_ms: float = 0,
    end_ms: float | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """An OTLP JSON span; times are milliseconds after T0, end defaults to the start."""
    end = start_ms if end_ms is None else end_ms
    return {
        "traceId": TRACE,
        "spanId": sid(short),
        "parentSpanId": sid(parent) if parent else "",
        "name": name,
        "kind": 2,
        "startTimeUnixNano": str(T0 + int(start_ms * MS)),
        "endTimeUnixNano": str(T0 + int(end * MS)),
        **extra,
    }


def document(*resources: tuple[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """An OTLP JSON trace document with one resource per (service, spans) pair."""
    return {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": service}}]
                },
                "scopeSpans": [{"scope": {"name": "test", "version": "1"}, "spans": spans}],
            }
            for service, spans in resources
        ]
    }


def error(message: str) -> dict[str, Any]:
    return {"status": {"code": 2, "message": message}}


# Spans are listed out of order on purpose: the db resource comes first, children before parents.
BIG = document(
    (
        "db",
        [
            span("b2", "zero", "b1", 14, 14),
            span("b1", "SELECT", "a2", 12, 18, **error("deadlock")),
        ],
    ),
    (
        "api",
        [
            span("a3", "render", "a1", 30, 50),
            span("a2", "auth", "a1", 10, 20),
            span("a2", "auth (sent twice)", "a1", 10, 20),
            span("a5", "tie-b", "a1", 60, 70),
            span("a4", "tie-a", "a1", 60, 70),
            span("a1", "GET /cart", "", 0, 100),
            span("0f", "orphan", "ee", 5, 8),
            span("c1", "cycle-1", "c2", 210, 230),
            span("c2", "cycle-2", "c1", 200, 240),
            span("c3", "cycle-child", "c1", 220, 225),
            span("5e", "self-parent", "5e", 300, 301),
        ],
    ),
)


def test_flatten_orders_depth_first_with_orphans_cycles_and_duplicates() -> None:
    rows = flatten(BIG)
    assert [(row.span_id, row.depth) for row in rows] == [
        (sid("a1"), 0),
        (sid("a2"), 1),
        (sid("b1"), 2),
        (sid("b2"), 3),
        (sid("a3"), 1),
        (sid("a4"), 1),  # same start as a5: the span id breaks the tie
        (sid("a5"), 1),
        (sid("0f"), 0),  # its parent is not in the document
        (sid("c2"), 0),  # the cycle is entered at its earliest span
        (sid("c1"), 1),
        (sid("c3"), 2),
        (sid("5e"), 0),
    ]
    assert [row.service for row in rows[:4]] == ["api", "api", "db", "db"]
    assert rows[1].name == "auth"  # the first copy of a repeated span wins


def test_clock_skew_does_not_reorder_the_tree() -> None:
    # Children that claim to start before their parent stay under it.
    skewed = document(("api", [span("a2", "child", "a1", 0, 5), span("a1", "root", "", 3, 9)]))
    assert [(row.name, row.depth) for row in flatten(skewed)] == [("root", 0), ("child", 1)]


def test_flatten_reads_every_field_and_tolerates_loose_encodings() -> None:
    attributes = [
        {"key": "s", "value": {"stringValue": "x"}},
        {"key": "i", "value": {"intValue": "42"}},
        {"key": "d", "value": {"doubleValue": 1.5}},
        {"key": "b", "value": {"boolValue": True}},
        {"key": "a", "value": {"arrayValue": {"values": [{"intValue": 1}, {"stringValue": "y"}]}}},
        {"key": "k", "value": {"kvlistValue": {"values": [{"key": "z", "value": {}}]}}},
        {"key": "raw", "value": {"bytesValue": "AQI="}},
    ]
    loose = {
        "traceId": TRACE.upper(),
        "spanId": sid("AB"),
        "name": "loose",
        "kind": "SPAN_KIND_CLIENT",
        "startTimeUnixNano": T0,
        "endTimeUnixNano": T0 + 5,
        "attributes": attributes,
        "events": [{"timeUnixNano": "1", "name": "e1"}, {"name": "e2"}],
        "status": {"code": "STATUS_CODE_ERROR"},
    }
    doc = {"resourceSpans": [{"scopeSpans": [{"spans": [loose, {"name": "bare"}]}]}, {}]}
    bare, first = flatten(doc)  # the bare span has no start time, so it sorts first
    assert first == SpanRow(
        trace_id=TRACE,
        span_id=sid("ab"),
        parent_span_id="",
        name="loose",
        service="unknown",
        kind=3,
        start_ns=T0,
        end_ns=T0 + 5,
        status_code=2,
        status_message="",
        attributes={
            "s": "x",
            "i": "42",
            "d": "1.5",
            "b": "true",
            "a": "[1, y]",
            "k": "{z: }",
            "raw": "AQI=",
        },
        events=2,
        depth=0,
    )
    assert (bare.name, bare.span_id, bare.start_ns, bare.status_code) == ("bare", "", 0, 0)


@pytest.mark.parametrize(
    "doc",
    [{}, {"resourceSpans": []}, {"resourceSpans": [{"scopeSpans": [{}, {"spans": []}]}]}],
)
def test_documents_without_spans(doc: dict[str, Any]) -> None:
    assert flatten(doc) == []
    assert waterfall(doc) == "trace has no spans\n"


def test_a_deep_chain_does_not_recurse() -> None:
    chain = [
        {**span("00", f"s{i}"), "spanId": f"{i:016x}", "parentSpanId": f"{i - 1:016x}"}
        for i in range(1, 5001)
    ]
    rows = flatten(document(("api", chain)))
    assert [row.depth for row in rows] == list(range(5000))


SMALL = document(
    (
        "api",
        [span("a1", "GET /cart", "", 0, 100, status={"code": 1}), span("a2", "auth", "a1", 10, 20)],
    ),
    ("db", [span("b1", "query", "a1", 50, 90, **error("timeout")), span("b2", "SELECT", "b1", 50)]),
)


def test_waterfall_golden() -> None:
    # Width 73: a 24-column label, a 40-column bar (100ms trace, 2.5ms a cell), a 7-column duration.
    label, bar = 24, 40
    assert waterfall(SMALL, width=73) == "\n".join(
        [
            f"trace {TRACE}  4 spans  services: api, db  duration: 100ms  status: error",
            f"{'api: GET /cart':<{label}} {'█' * bar}   100ms",
            f"{'  api: auth':<{label}} {' ' * 4}{'█' * 4}{' ' * 32}  10.0ms",
            f"{'  db: query':<{label}} {' ' * 20}{'█' * 16}{' ' * 4}  40.0ms  ERROR timeout",
            f"{'    db: SELECT':<{label}} {' ' * 20}▏{' ' * 19}     0ns",
            "",
        ]
    )


def bars(text: str, label: int, bar: int) -> list[str]:
    return [line[label + 1 : label + 1 + bar] for line in text.splitlines()[1:]]


def test_bars_are_proportional_to_the_trace_range() -> None:
    # Width 105: a 32-column label and a 64-column bar.
    doc = document(("api", [span("a1", "root", "", 0, 1000), span("a2", "half", "a1", 500, 750)]))
    root, half = bars(waterfall(doc, width=105), 32, 64)
    assert root == "█" * 64
    assert half == " " * 32 + "█" * 16 + " " * 16


def test_short_and_instant_traces_use_the_thin_bar() -> None:
    doc = document(("api", [span("a1", "root", "", 0, 1000), span("a2", "blip", "a1", 999, 999.5)]))
    assert bars(waterfall(doc, width=105), 32, 64)[1] == " " * 63 + "▏"
    instant = document(("api", [span("a1", "root"), span("a2", "child", "a1")]))
    text = waterfall(instant, width=105)
    assert bars(text, 32, 64) == ["▏" + " " * 63] * 2


def test_color_marks_only_error_bars() -> None:
    plain, colored = waterfall(SMALL, width=73), waterfall(SMALL, width=73, color=True)
    assert "\x1b" not in plain
    assert colored.count("\x1b[31m") == 1
    assert f"\x1b[31m{'█' * 16}\x1b[0m" in colored.splitlines()[3]
    assert colored.replace("\x1b[31m", "").replace("\x1b[0m", "") == plain


def test_deep_indentation_is_capped_and_long_labels_truncated() -> None:
    chain = [span("00", "root", "", 0, 10)]
    chain += [span(f"{i:02x}", f"level{i}", f"{i - 1:02x}", i, 10) for i in range(1, 9)]
    chain.append(span("ff", "x" * 60, "00", 9, 10))
    lines = waterfall(document(("api", chain)), width=100).splitlines()
    # The label column is 32 wide, so indentation stops at 5 levels (10 spaces).
    assert lines[9].startswith(" " * 10 + "api: level8 ")
    assert lines[10][:33] == "  api: " + "x" * 24 + "… "
    assert len(lines[1]) == 100


def test_single_span_header_and_hostile_text() -> None:
    doc = document(("api", [span("a1", "evil\x1b[2J\nname", "", 0, 2, **error("bad\nthing"))]))
    header, line = waterfall(doc).splitlines()
    assert header.endswith("  1 span  services: api  duration: 2.00ms  status: error")
    assert "\x1b" not in line
    assert line.startswith("api: evil [2J name")
    assert line.endswith("2.00ms  ERROR bad thing")


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "0ns"),
        (999, "999ns"),
        (1_000, "1.00µs"),
        (1_234, "1.23µs"),
        (850_000, "850µs"),
        (999_499, "999µs"),
        (999_500, "1.00ms"),
        (9_996_000, "10.0ms"),
        (12_345_678, "12.3ms"),
        (1_520_000_000, "1.52s"),
        (59_940_000_000, "59.9s"),
        (59_950_000_000, "1m00s"),
        (123_000_000_000, "2m03s"),
        (3_599_400_000_000, "59m59s"),
        (3_599_600_000_000, "1h00m"),
        (90_061_000_000_000, "25h01m"),
        (-1_500, "-1.50µs"),
    ],
)
def test_format_duration_ns(ns: int, text: str) -> None:
    assert format_duration_ns(ns) == text


def test_search_table() -> None:
    rows = [
        {
            "trace_id": TRACE,
            "service": "checkout",
            "root_name": "GET /cart",
            "start": dt.datetime(2026, 1, 2, 3, 4, 5, 678_000, tzinfo=dt.UTC),
            "duration_ns": 12_345_678,
            "span_count": 14,
            "status": "error",
        },
        {
            "trace_id": "4BF92F3577B34DA6A3CE929D0E0E4736",
            "service": "a-very-long-service-name-indeed",
            "root_name": "r" * 60,
            "start": dt.datetime(2026, 1, 2, 5, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))),
            "duration_ns": 123_000_000_000,
            "span_count": 1,
            "status": "ok",
        },
    ]
    assert search_table(rows) == (
        "TRACE ID                          START                 DURATION   SPANS  STATUS"
        "  SERVICE               ROOT NAME\n"
        f"{TRACE}  2026-01-02T03:04:05Z    12.3ms      14  error "
        "  checkout              GET /cart\n"
        "4bf92f3577b34da6a3ce929d0e0e4736  2026-01-02T03:00:00Z     2m03s       1  ok    "
        f"  a-very-long-service…  {'r' * 47}…\n"
    )


def test_search_table_without_rows() -> None:
    assert search_table([]) == "no traces found\n"
