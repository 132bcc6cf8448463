"""Reading a stored trace (an OTLP JSON document) as text: span rows, a waterfall, a search table.

The parser is tolerant on purpose: stored traces come from many SDKs, so absent fields take
their protobuf defaults, integers may be numbers or strings, enums may be names, and corrupt
parent links (cycles, unknown parents, repeated spans) still produce a finite, complete listing.
All text output ends with a newline, like the query renderer's.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

_KINDS = ("UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER")
_STATUSES = ("UNSET", "OK", "ERROR")
_STATUS_ERROR = 2
_UNKNOWN_SERVICE = "unknown"
_DURATION_WIDTH = 7
_MAX_LABEL_WIDTH = 32
_MAX_MESSAGE = 80
_RED, _RESET = "\x1b[31m", "\x1b[0m"
# Span names and messages are untrusted: a stray escape sequence must not drive the terminal.
_CONTROL = {c: " " for c in [*range(32), *range(127, 160)]}


@dataclass(frozen=True)
class SpanRow:
    """One span as shown in a waterfall; ``depth`` is its nesting level (0 for roots)."""

    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    service: str
    kind: int
    start_ns: int
    end_ns: int
    status_code: int
    status_message: str
    attributes: dict[str, str]
    events: int
    depth: int


def _items(obj: Any, key: str) -> list[Mapping[str, Any]]:
    value = obj.get(key) if isinstance(obj, Mapping) else None
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


def _int(value: Any, names: Sequence[str] = ()) -> int:
    # Protobuf's JSON mapping also allows enum names, e.g. "SPAN_KIND_SERVER".
    if isinstance(value, str) and (name := value.upper().rsplit("_", 1)[-1]) in names:
        return names.index(name)
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return 0


def _any_value(value: Any) -> str:
    if not isinstance(value, Mapping):
        return ""
    for scalar in ("stringValue", "intValue", "doubleValue"):
        if scalar in value:
            return str(value[scalar])
    if "boolValue" in value:
        return "true" if value["boolValue"] is True else "false"
    if "arrayValue" in value:
        return "[" + ", ".join(_any_value(v) for v in _items(value["arrayValue"], "values")) + "]"
    if "kvlistValue" in value:
        return "{" + ", ".join(f"{k}: {v}" for k, v in _attributes(value["kvlistValue"])) + "}"
    return str(value.get("bytesValue", ""))


def _attributes(obj: Any, key: str = "values") -> list[tuple[str, str]]:
    return [(str(kv.get("key", "")), _any_value(kv.get("value"))) for kv in _items(obj, key)]


def _collect(document: Mapping[str, Any]) -> dict[str, SpanRow]:
    """Every distinct span, keyed for linking; the first copy of a repeated span wins."""
    spans: dict[str, SpanRow] = {}
    for resource_spans in _items(document, "resourceSpans"):
        resource = dict(_attributes(resource_spans.get("resource"), "attributes"))
        service = resource.get("service.name") or _UNKNOWN_SERVICE
        for scope_spans in _items(resource_spans, "scopeSpans"):
            for span in _items(scope_spans, "spans"):
                span_id = str(span.get("spanId") or "").lower()
                status = span["status"] if isinstance(span.get("status"), Mapping) else {}
                row = SpanRow(
                    trace_id=str(span.get("traceId") or "").lower(),
                    span_id=span_id,
                    parent_span_id=str(span.get("parentSpanId") or "").lower(),
                    name=str(span.get("name") or ""),
                    service=service,
                    kind=_int(span.get("kind"), _KINDS),
                    start_ns=_int(span.get("startTimeUnixNano")),
                    end_ns=_int(span.get("endTimeUnixNano")),
                    status_code=_int(status.get("code"), _STATUSES),
                    status_message=str(status.get("message") or ""),
                    attributes=dict(_attributes(span, "attributes")),
                    events=len(_items(span, "events")),
                    depth=0,
                )
                # Spans without an id cannot be linked or deduplicated, but are still shown.
                spans.setdefault(span_id or f"#{len(spans)}", row)
    return spans


def flatten(document: Mapping[str, Any]) -> list[SpanRow]:
    """List every span of ``document`` in waterfall order, each with its nesting ``depth``.

    Roots are spans without a parent or whose parent is missing from the document; each tree is
    walked depth first with siblings ordered by start time, then span id. Spans caught in a
    parent cycle are listed from the cycle's earliest span, and a repeated span id appears once.
    """
    spans = _collect(document)
    children: dict[str, list[str]] = {}
    for key, row in spans.items():
        if row.parent_span_id in spans:  # never "": spans without an id get a "#" key
            children.setdefault(row.parent_span_id, []).append(key)

    def order(key: str) -> tuple[int, str]:
        return spans[key].start_ns, spans[key].span_id

    for siblings in children.values():
        siblings.sort(key=order)
    visited: set[str] = set()
    trees: list[tuple[tuple[int, str], list[SpanRow]]] = []

    def walk(root: str) -> None:
        rows: list[SpanRow] = []
        stack = [(root, 0)]
        while stack:  # iterative, so a very deep trace cannot hit the recursion limit
            key, depth = stack.pop()
            if key in visited:
                continue
            visited.add(key)
            rows.append(replace(spans[key], depth=depth))
            stack.extend((child, depth + 1) for child in reversed(children.get(key, [])))
        trees.append((order(root), rows))

    ordered = sorted(spans, key=order)
    for key in ordered:
        if spans[key].parent_span_id not in spans:
            walk(key)
    for key in ordered:
        if key in visited:
            continue
        # Not reachable from any root, so following parents must end in a cycle.
        seen, node = set(), key
        while node not in seen:
            seen.add(node)
            node = spans[node].parent_span_id
        cycle = [node]
        while (parent := spans[cycle[-1]].parent_span_id) != node:
            cycle.append(parent)
        walk(min(cycle, key=order))
    trees.sort(key=lambda tree: tree[0])
    return [row for _, rows in trees for row in rows]


def _three_digits(ns: int, scale: int) -> str | None:
    # Integer rounding, so that e.g. 9.996ms becomes "10.0ms" rather than "10.00ms".
    for decimals in (2, 1, 0):
        factor = 10**decimals
        rounded = (ns * factor + scale // 2) // scale
        if rounded < 1000:
            whole, fraction = divmod(rounded, factor)
            return f"{whole}.{fraction:0{decimals}d}" if decimals else str(whole)
    return None


def format_duration_ns(ns: int) -> str:
    """A duration for people, three significant digits: ``850µs``, ``12.3ms``, ``1.52s``.

    Below a microsecond it is whole nanoseconds (``999ns``); from a minute on, minutes and
    seconds (``2m03s``), and from an hour on, hours and minutes (``1h05m``).
    """
    if ns < 0:
        return "-" + format_duration_ns(-ns)
    if ns < 1000:
        return f"{ns}ns"
    for unit, scale in (("µs", 10**3), ("ms", 10**6), ("s", 10**9)):
        text = _three_digits(ns, scale)
        if text is not None and (unit != "s" or float(text) < 60):
            return text + unit
    seconds = (ns + 5 * 10**8) // 10**9
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    hours, minutes = divmod((ns + 30 * 10**9) // (60 * 10**9), 60)
    return f"{hours}h{minutes:02d}m"


def _fit(value: object, width: int | None = None) -> str:
    text = str(value).translate(_CONTROL)
    return text if width is None or len(text) <= width else text[: max(width - 1, 0)] + "…"


def _bar(row: SpanRow, t0: int, total: int, width: int) -> tuple[int, str]:
    """Where the span's bar starts within ``width`` cells, and the bar itself."""
    offset, duration = row.start_ns - t0, max(row.end_ns - row.start_ns, 0)
    start = min(offset * width // total, width - 1) if total > 0 else 0
    if total <= 0 or duration * width < total:
        return start, "▏"
    cells = (2 * duration * width + total) // (2 * total)
    return start, "█" * max(1, min(cells, width - start))


def waterfall(document: Mapping[str, Any], width: int = 100, color: bool = False) -> str:
    """Draw the trace as a header line and one timeline bar per span, in ``width`` columns.

    Each span line is an indented ``service: name`` label, a bar placed on the trace's time
    range, and the duration; error spans add ``ERROR <message>`` after the duration (past
    ``width`` when need be, since the message matters more than the line length) and, with
    ``color``, a red bar. Very narrow widths keep a minimum label and bar size.
    """
    rows = flatten(document)
    if not rows:
        return "trace has no spans\n"
    label_width = max(12, min(_MAX_LABEL_WIDTH, width // 3))
    bar_width = max(10, width - label_width - _DURATION_WIDTH - 2)
    # Indentation stops at a third of the label, so deep spans still show their names.
    max_indent = label_width // 6
    t0 = min(row.start_ns for row in rows)
    total = max(max(row.start_ns, row.end_ns) for row in rows) - t0
    codes = {row.status_code for row in rows}
    status = "error" if _STATUS_ERROR in codes else "ok" if 1 in codes else "unset"
    lines = [
        f"trace {_fit(', '.join(dict.fromkeys(r.trace_id for r in rows)) or '?')}"
        f"  {len(rows)} span{'s' if len(rows) != 1 else ''}"
        f"  services: {_fit(', '.join(dict.fromkeys(r.service for r in rows)))}"
        f"  duration: {format_duration_ns(total)}  status: {status}"
    ]
    for row in rows:
        label = "  " * min(row.depth, max_indent) + f"{row.service}: {row.name}"
        start, bar = _bar(row, t0, total, bar_width)
        padding = " " * (bar_width - start - len(bar))
        error = row.status_code == _STATUS_ERROR
        if color and error:
            bar = _RED + bar + _RESET
        line = f"{_fit(label, label_width):<{label_width}} {' ' * start}{bar}{padding} "
        line += f"{format_duration_ns(max(row.end_ns - row.start_ns, 0)):>{_DURATION_WIDTH}}"
        if error:
            line += f"  ERROR {_fit(row.status_message, _MAX_MESSAGE)}".rstrip()
        lines.append(line)
    return "\n".join(lines) + "\n"


def search_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Trace search results as a fixed-width table, one trace per line, in the given order.

    Columns: trace id, start (UTC, whole seconds), duration, span count, status, root
    service and root span name (the last two truncated with ``…``).
    """
    if not rows:
        return "no traces found\n"
    columns = "{:<32}  {:<20}  {:>8}  {:>6}  {:<6}  {:<20}  {}"
    lines = [
        columns.format("TRACE ID", "START", "DURATION", "SPANS", "STATUS", "SERVICE", "ROOT NAME")
    ]
    for row in rows:
        start: dt.datetime = row["start"]
        # A naive time is taken to be UTC already, as everywhere else in tidegate.
        start = start.astimezone(dt.UTC) if start.tzinfo is not None else start
        line = columns.format(
            _fit(row["trace_id"]).lower(),
            start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            format_duration_ns(int(row["duration_ns"])),
            int(row["span_count"]),
            _fit(row["status"]),
            _fit(row["service"], 20),
            _fit(row["root_name"], 48),
        )
        lines.append(line.rstrip())
    return "\n".join(lines) + "\n"
