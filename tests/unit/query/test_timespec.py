"""Durations, points in time and query ranges: accepted forms and rejection with a reason."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from tidegate.errors import QueryError
from tidegate.query.timespec import (
    TimeRange,
    format_duration,
    parse_duration,
    parse_range,
    parse_time,
)

NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)
td = dt.timedelta


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", td(seconds=90)),
        ("1h30m", td(hours=1, minutes=30)),
        ("500ms", td(milliseconds=500)),
        ("2d", td(days=2)),
        ("1w", td(weeks=1)),
        ("1w2d3h4m5s6ms", td(weeks=1, days=2, hours=3, minutes=4, seconds=5, milliseconds=6)),
        ("1m1ms", td(minutes=1, milliseconds=1)),
        ("0h5m", td(minutes=5)),
        ("90", td(seconds=90)),
        ("1.5", td(seconds=1.5)),
        (".25", td(milliseconds=250)),
        ("  15m ", td(minutes=15)),
        ("36h", td(hours=36)),
    ],
)
def test_parse_duration(text: str, expected: dt.timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty duration"),
        ("  ", "empty duration"),
        ("0", "duration '0' must be greater than zero"),
        ("0s", "duration '0s' must be greater than zero"),
        ("0.0000001", "must be greater than zero"),
        ("-1h", "duration '-1h' must be positive"),
        ("5y", "invalid duration '5y': expected whole numbers with units"),
        ("1.5h", "invalid duration '1.5h'"),
        ("1h 30m", "invalid duration '1h 30m'"),
        ("h", "invalid duration 'h'"),
        ("1H", "invalid duration '1H'"),
        ("1e3", "invalid duration '1e3'"),
        ("\u0661s", "invalid duration"),
        ("30m1h", "invalid duration '30m1h': units must go from largest to smallest"),
        ("1h1h", "units must go from largest to smallest"),
        ("9" * 400, "is too large"),
        ("9" * 5000 + "s", "is too large"),
        ("99999999999w", "is too large"),
    ],
)
def test_parse_duration_rejects(text: str, message: str) -> None:
    with pytest.raises(QueryError, match=re.escape(message)):
        parse_duration(text)


@pytest.mark.parametrize(
    ("delta", "expected"),
    [
        (td(0), "0s"),
        (td(minutes=90), "1h30m"),
        (td(days=400), "400d"),
        (td(days=8, seconds=1), "8d1s"),
        (td(seconds=52 * 60 + 22), "52m22s"),
        (td(milliseconds=1500), "1s500ms"),
        (td(microseconds=999), "0s"),
    ],
)
def test_format_duration(delta: dt.timedelta, expected: str) -> None:
    assert format_duration(delta) == expected
    if delta >= td(milliseconds=1):
        assert parse_duration(expected) == delta


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("now", NOW),
        (" NOW ", NOW),
        ("now-1h", NOW - td(hours=1)),
        ("now+5m", NOW + td(minutes=5)),
        ("now - 1d12h", NOW - td(days=1, hours=12)),
        ("-1h", NOW - td(hours=1)),
        ("+90", NOW + td(seconds=90)),
        ("-30", NOW - td(seconds=30)),
        ("2026-11-27T10:00:00Z", dt.datetime(2026, 11, 27, 10, tzinfo=dt.UTC)),
        ("2026-11-27t10:00:00z", dt.datetime(2026, 11, 27, 10, tzinfo=dt.UTC)),
        ("2026-11-27T10:00:00+02:00", dt.datetime(2026, 11, 27, 8, tzinfo=dt.UTC)),
        ("2026-11-27T10:00:00-05:30", dt.datetime(2026, 11, 27, 15, 30, tzinfo=dt.UTC)),
        ("2026-11-27T10:00:00", dt.datetime(2026, 11, 27, 10, tzinfo=dt.UTC)),
        ("2026-11-27 10:00", dt.datetime(2026, 11, 27, 10, tzinfo=dt.UTC)),
        ("2026-11-27", dt.datetime(2026, 11, 27, tzinfo=dt.UTC)),
        (
            "2026-11-27T10:00:00.25Z",
            dt.datetime(2026, 11, 27, 10, 0, 0, 250000, tzinfo=dt.UTC),
        ),
        ("1764237600", dt.datetime(2025, 11, 27, 10, tzinfo=dt.UTC)),
        ("1764237600.5", dt.datetime(2025, 11, 27, 10, 0, 0, 500000, tzinfo=dt.UTC)),
        ("1764237600.000001", dt.datetime(2025, 11, 27, 10, 0, 0, 1, tzinfo=dt.UTC)),
        ("1764237600.", dt.datetime(2025, 11, 27, 10, tzinfo=dt.UTC)),
        ("0", dt.datetime(1970, 1, 1, tzinfo=dt.UTC)),
    ],
)
def test_parse_time(text: str, expected: dt.datetime) -> None:
    parsed = parse_time(text, NOW)
    assert parsed == expected
    assert parsed.tzinfo is dt.UTC


def test_parse_time_converts_now_to_utc() -> None:
    paris = dt.timezone(td(hours=1))
    parsed = parse_time("now", NOW.astimezone(paris))
    assert parsed == NOW
    assert parsed.tzinfo is dt.UTC


def test_parse_time_needs_an_aware_now() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        parse_time("now", NOW.replace(tzinfo=None))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty time; expected now, now-1h"),
        ("yesterday", "invalid time 'yesterday': expected now, now-1h, -1h, an RFC 3339 time"),
        ("now-", "invalid time 'now-': empty duration"),
        ("now-5y", "invalid time 'now-5y': invalid duration '5y'"),
        ("now--1h", "invalid time 'now--1h': duration '-1h' must be positive"),
        ("now*2", "invalid time 'now*2'"),
        ("2026-13-01T00:00:00Z", "invalid time '2026-13-01T00:00:00Z'"),
        ("1764237600000", "Unix time '1764237600000' is out of range; expected seconds"),
        ("9999-12-31T23:59:59-01:00", "time '9999-12-31T23:59:59-01:00' is out of range"),
        ("now+99999999d", "time 'now+99999999d' is out of range"),
    ],
)
def test_parse_time_rejects(text: str, message: str) -> None:
    with pytest.raises(QueryError, match=re.escape(message)):
        parse_time(text, NOW)


@pytest.mark.parametrize(
    ("start", "end", "step", "expected"),
    [
        ("now-1h", "now", None, TimeRange(NOW - td(hours=1), NOW, None)),
        ("now-1h", "now", "1m", TimeRange(NOW - td(hours=1), NOW, td(minutes=1))),
        ("now-400d", "now", "1h", TimeRange(NOW - td(days=400), NOW, td(hours=1))),
        ("now-400d", "now", "52m22s", TimeRange(NOW - td(days=400), NOW, td(seconds=3142))),
        ("now-1h", "now", "328ms", TimeRange(NOW - td(hours=1), NOW, td(milliseconds=328))),
        ("now-11000s", "now", "1s", TimeRange(NOW - td(seconds=11000), NOW, td(seconds=1))),
        ("now-1h", "now", "99999999d", TimeRange(NOW - td(hours=1), NOW, td(days=99999999))),
        (
            "2026-11-27T10:00:00Z",
            "1795780800",
            "15m",
            TimeRange(
                dt.datetime(2026, 11, 27, 10, tzinfo=dt.UTC),
                dt.datetime(2026, 11, 27, 12, tzinfo=dt.UTC),
                td(minutes=15),
            ),
        ),
    ],
)
def test_parse_range(start: str, end: str, step: str | None, expected: TimeRange) -> None:
    assert parse_range(start, end, step, NOW) == expected


@pytest.mark.parametrize(
    ("start", "end", "step", "message"),
    [
        (
            "now",
            "now-1h",
            None,
            "start 2026-11-27T12:00:00Z ('now') must be before end 2026-11-27T11:00:00Z",
        ),
        ("now", "now", None, "must be before end"),
        ("now-401d", "now", None, "is 401.0 days long; the limit is 400 days"),
        ("now-1h", "now", "0s", "invalid step: duration '0s' must be greater than zero"),
        ("now-1h", "now", "-1m", "invalid step: duration '-1m' must be positive"),
        ("now-1h", "now", "soon", "invalid step: invalid duration 'soon'"),
        ("now-1h", "now", "300ms", "use a step of at least 328ms"),
        ("now-11001s", "now", "1s", "into more than 11000 buckets; use a step of at least 2s"),
        ("now-400d", "now", "1s", "step 1s splits 400d into more than 11000 buckets"),
        ("now-400d", "now", "52m21s", "use a step of at least 52m22s"),
        ("now-10s", "now", "0.0005", "use a step of at least 1ms"),
        ("later", "now", None, "invalid time 'later'"),
        ("now-1h", "later", None, "invalid time 'later'"),
    ],
)
def test_parse_range_rejects(start: str, end: str, step: str | None, message: str) -> None:
    with pytest.raises(QueryError, match=re.escape(message)):
        parse_range(start, end, step, NOW)
