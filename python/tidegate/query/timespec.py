"""Times, durations and ranges as people type them: ``now-1h``, ``2026-11-27T10:00:00Z``, ``5m``.

Everything is converted to timezone-aware UTC datetimes and validated before a query runs, so
that a range the database would refuse (or take minutes to answer) is rejected with a message
saying how to fix it.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from tidegate.errors import QueryError

MAX_RANGE = dt.timedelta(days=400)
MAX_BUCKETS = 11_000

_UNITS = {
    "w": dt.timedelta(weeks=1),
    "d": dt.timedelta(days=1),
    "h": dt.timedelta(hours=1),
    "m": dt.timedelta(minutes=1),
    "s": dt.timedelta(seconds=1),
    "ms": dt.timedelta(milliseconds=1),
}
_UNIT_ORDER = tuple(_UNITS)
# re.ASCII: \d would otherwise accept digits from any script, which int() then also accepts.
_PART = re.compile(r"(\d+)(ms|[wdhms])", re.ASCII)
_BARE_SECONDS = re.compile(r"\d+(?:\.\d*)?|\.\d+", re.ASCII)
_UNIX = re.compile(r"(\d+)(?:\.(\d*))?", re.ASCII)
_RELATIVE = re.compile(r"(?:now)?\s*([+-])\s*(.*)", re.IGNORECASE | re.DOTALL)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
# Larger "Unix seconds" are almost always milliseconds; they would land after the year 5000.
_MAX_UNIX_SECONDS = 10**11
_TIME_FORMS = (
    "expected now, now-1h, -1h, an RFC 3339 time such as 2026-11-27T10:00:00Z, or Unix seconds"
)


@dataclass(frozen=True)
class TimeRange:
    """A validated query window ``[start, end)`` in UTC, with the bucket width if one was asked."""

    start: dt.datetime
    end: dt.datetime
    step: dt.timedelta | None


def parse_duration(text: str) -> dt.timedelta:
    """Parse a positive Prometheus-style duration: ``1h30m``, ``90s``, ``500ms``, ``2d``, ``1w``.

    Units (ms, s, m, h, d, w) take whole numbers and go from largest to smallest; a bare number,
    which may have a fraction, is seconds.
    """
    stripped = text.strip()
    if not stripped:
        raise QueryError("empty duration; expected e.g. 30s, 5m or 1h30m")
    if stripped.startswith("-"):
        raise QueryError(f"duration {text!r} must be positive")
    bare = _BARE_SECONDS.fullmatch(stripped) is not None
    parts = [] if bare else _split_units(stripped, text)
    try:
        if bare:
            total = dt.timedelta(seconds=float(stripped))
        else:
            total = sum((int(count) * _UNITS[unit] for count, unit in parts), dt.timedelta(0))
    except (OverflowError, ValueError):
        # Only reachable with absurdly many digits: float("9"*400) or int() over its size limit.
        raise QueryError(f"duration {text!r} is too large") from None
    if total <= dt.timedelta(0):
        raise QueryError(f"duration {text!r} must be greater than zero")
    return total


def _split_units(stripped: str, text: str) -> list[tuple[str, str]]:
    parts: list[tuple[str, str]] = []
    pos, last_rank = 0, -1
    while pos < len(stripped):
        part = _PART.match(stripped, pos)
        if part is None:
            raise QueryError(
                f"invalid duration {text!r}: expected whole numbers with units "
                "ms, s, m, h, d or w, such as 1h30m, or a number of seconds"
            )
        rank = _UNIT_ORDER.index(part[2])
        if rank <= last_rank:
            raise QueryError(
                f"invalid duration {text!r}: units must go from largest to smallest, "
                "each at most once (w, d, h, m, s, ms)"
            )
        last_rank = rank
        parts.append((part[1], part[2]))
        pos = part.end()
    return parts


def format_duration(delta: dt.timedelta) -> str:
    """Render a non-negative duration the way parse_duration reads it, e.g. ``1h30m``.

    Weeks are left as days (``400d`` reads better than ``57w1d``) and any remainder below a
    millisecond is dropped.
    """
    if delta < dt.timedelta(0):
        raise ValueError("format_duration needs a non-negative duration")
    remaining = delta
    parts: list[str] = []
    for unit, size in _UNITS.items():
        if unit == "w":
            continue
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def parse_time(text: str, now: dt.datetime) -> dt.datetime:
    """Parse a point in time into a timezone-aware UTC datetime.

    Accepted: ``now``; ``now-1h``, ``now+5m`` or just ``-1h`` (relative to ``now``); RFC 3339 or
    ISO 8601 (a time without an offset is UTC); Unix seconds such as ``1764237600`` or
    ``1764237600.5``. An all-digit input is always Unix seconds, never a compact ISO date.
    """
    if now.utcoffset() is None:
        raise ValueError("parse_time needs a timezone-aware now")
    now = now.astimezone(dt.UTC)
    stripped = text.strip()
    if not stripped:
        raise QueryError(f"empty time; {_TIME_FORMS}")
    if stripped.lower() == "now":
        return now
    try:
        relative = _RELATIVE.fullmatch(stripped)
        if relative is not None:
            try:
                delta = parse_duration(relative[2])
            except QueryError as exc:
                raise QueryError(f"invalid time {text!r}: {exc}") from None
            return now + delta if relative[1] == "+" else now - delta
        unix = _UNIX.fullmatch(stripped)
        if unix is not None:
            return _from_unix(unix, text)
        try:
            # Upper-casing accepts RFC 3339's lowercase "t" and "z", which fromisoformat refuses.
            parsed = dt.datetime.fromisoformat(stripped.upper())
        except ValueError:
            raise QueryError(f"invalid time {text!r}: {_TIME_FORMS}") from None
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=dt.UTC)
        return parsed.astimezone(dt.UTC)
    except OverflowError:
        raise QueryError(f"time {text!r} is out of range") from None


def _from_unix(unix: re.Match[str], text: str) -> dt.datetime:
    whole = int(unix[1])
    if whole >= _MAX_UNIX_SECONDS:
        raise QueryError(
            f"Unix time {text!r} is out of range; expected seconds (this looks like milliseconds)"
        )
    # Built from the digits rather than a float so that fractions are exact to the microsecond.
    micros = int((unix[2] or "").ljust(6, "0")[:6])
    return _EPOCH + dt.timedelta(seconds=whole, microseconds=micros)


def _iso(moment: dt.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def parse_range(start: str, end: str, step: str | None, now: dt.datetime) -> TimeRange:
    """Parse and validate a query window: ``start < end``, at most 400 days long, and with a
    ``step`` (if given) that yields at most 11,000 buckets."""
    start_time = parse_time(start, now)
    end_time = parse_time(end, now)
    if start_time >= end_time:
        raise QueryError(
            f"start {_iso(start_time)} ({start!r}) must be before end {_iso(end_time)} ({end!r})"
        )
    span = end_time - start_time
    if span > MAX_RANGE:
        raise QueryError(
            f"time range from {_iso(start_time)} to {_iso(end_time)} is "
            f"{span / dt.timedelta(days=1):.1f} days long; the limit is {MAX_RANGE.days} days"
        )
    if step is None:
        return TimeRange(start_time, end_time, None)
    try:
        step_delta = parse_duration(step)
    except QueryError as exc:
        raise QueryError(f"invalid step: {exc}") from None
    # Compared in integer microseconds: step_delta * MAX_BUCKETS overflows for steps of years.
    if _micros(span) > _micros(step_delta) * MAX_BUCKETS:
        raise QueryError(
            f"step {step.strip()} splits {format_duration(span)} into more than "
            f"{MAX_BUCKETS} buckets; use a step of at least {format_duration(_min_step(span))}"
        )
    return TimeRange(start_time, end_time, step_delta)


def _min_step(span: dt.timedelta) -> dt.timedelta:
    """The smallest step, in whole milliseconds (whole seconds from 1s up), within MAX_BUCKETS."""
    micros = -(-_micros(span) // MAX_BUCKETS)  # ceiling division
    grain = 1_000_000 if micros > 1_000_000 else 1_000
    return dt.timedelta(microseconds=-(-micros // grain) * grain)


def _micros(delta: dt.timedelta) -> int:
    return delta // dt.timedelta(microseconds=1)
