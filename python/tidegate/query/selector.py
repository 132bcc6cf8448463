"""Series selectors such as ``http.server.request.duration{service.name="api", code=~"5.."}``.

The syntax is PromQL's instant-vector selector with OpenTelemetry-style names: metric and label
names may contain ``.``, ``:``, ``/`` and ``-``, and any other label name can be written as a
quoted string. Selectors are parsed and every regex compiled before a query runs, so a typo is
reported with its column instead of surfacing as a database error.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NoReturn

from tidegate.errors import QueryError

METRIC_LABEL = "__name__"
MAX_REGEX_LENGTH = 1000

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:/-]*")
_QUOTES = ('"', "'")
_ESCAPES = {"\\": "\\", '"': '"', "'": "'", "n": "\n", "t": "\t"}
_QUOTE_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t"})


class MatchOp(enum.Enum):
    """How a matcher compares a label value: equality or an anchored regex, or their negation."""

    EQ = "="
    NE = "!="
    RE = "=~"
    NRE = "!~"


# Two-character operators first, so that "=~" is not read as "=" followed by a stray "~".
_OPS = (MatchOp.RE, MatchOp.NRE, MatchOp.NE, MatchOp.EQ)


def compile_regex(label: str, pattern: str) -> re.Pattern[str]:
    """Compile the regex of a ``=~``/``!~`` matcher, raising QueryError if it is unusable."""
    if len(pattern) > MAX_REGEX_LENGTH:
        raise QueryError(
            f"regex for label {label!r} is {len(pattern)} characters long; "
            f"the limit is {MAX_REGEX_LENGTH}"
        )
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise QueryError(f"invalid regex for label {label!r}: {exc}") from None


def quote(value: str) -> str:
    """Render ``value`` as a double-quoted selector string that parses back to itself."""
    return '"' + value.translate(_QUOTE_ESCAPES) + '"'


@dataclass(frozen=True)
class Matcher:
    """One ``label op "value"`` condition; the regex of ``=~``/``!~`` is compiled on creation."""

    label: str
    op: MatchOp
    value: str
    _pattern: re.Pattern[str] | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        if self.op in (MatchOp.RE, MatchOp.NRE):
            object.__setattr__(self, "_pattern", compile_regex(self.label, self.value))

    def matches(self, actual: str | None) -> bool:
        """Whether a series whose label has value ``actual`` (None: label absent) qualifies.

        An absent label counts as the empty string, as in Prometheus, so ``foo=""`` selects
        series without ``foo``. Regexes must match the whole value.
        """
        text = "" if actual is None else actual
        if self._pattern is None:
            return (text == self.value) == (self.op is MatchOp.EQ)
        return (self._pattern.fullmatch(text) is not None) == (self.op is MatchOp.RE)

    def __str__(self) -> str:
        label = self.label if _NAME.fullmatch(self.label) else quote(self.label)
        return f"{label}{self.op.value}{quote(self.value)}"


@dataclass(frozen=True)
class Selector:
    """A metric name plus label matchers that must all hold (``__name__`` is not among them)."""

    metric: str
    matchers: tuple[Matcher, ...] = ()

    def __post_init__(self) -> None:
        if not self.metric:
            raise QueryError("empty metric name in selector")

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether a series of this metric with ``labels`` satisfies every matcher."""
        return all(m.matches(labels.get(m.label)) for m in self.matchers)

    def __str__(self) -> str:
        parts = [str(m) for m in self.matchers]
        if _NAME.fullmatch(self.metric):
            return f"{self.metric}{{{', '.join(parts)}}}" if parts else self.metric
        name = Matcher(METRIC_LABEL, MatchOp.EQ, self.metric)
        return "{" + ", ".join([str(name), *parts]) + "}"


def parse_selector(text: str) -> Selector:
    """Parse ``metric{label="v", ...}`` or ``{__name__="metric", ...}``; errors name a column."""
    return _Parser(text).parse()


class _Parser:
    """Recursive-descent parser over the raw text; ``pos`` is the index of the next character."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, message: str, pos: int | None = None) -> NoReturn:
        column = (self.pos if pos is None else pos) + 1
        raise QueryError(f"invalid selector {self.text!r} at column {column}: {message}")

    def peek(self) -> str:
        return self.text[self.pos : self.pos + 1]

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def name(self, what: str) -> str:
        found = _NAME.match(self.text, self.pos)
        if found is None:
            self.fail(f"expected {what}")
        self.pos = found.end()
        return found.group()

    def string(self) -> str:
        start, quote_char = self.pos, self.text[self.pos]
        self.pos += 1
        out: list[str] = []
        while True:
            char = self.peek()
            if not char:
                self.fail("unterminated string", start)
            if char == quote_char:
                self.pos += 1
                return "".join(out)
            if char == "\\":
                escape = self.text[self.pos + 1 : self.pos + 2]
                if not escape:
                    self.fail("unterminated string", start)
                if escape not in _ESCAPES:
                    self.fail(
                        f"unknown escape '\\{escape}' in string (write '\\\\' for a backslash)"
                    )
                out.append(_ESCAPES[escape])
                self.pos += 2
            else:
                out.append(char)
                self.pos += 1

    def parse(self) -> Selector:
        self.skip_space()
        if not self.peek():
            self.fail("empty selector")
        metric = ""
        if self.peek() != "{":
            metric = self.name("a metric name")
            self.skip_space()
        found: list[tuple[int, Matcher]] = []
        if self.peek() == "{":
            found = self.matcher_list()
            self.skip_space()
        if self.peek():
            self.fail(f"unexpected {self.peek()!r}; expected '{{' or the end of the selector")
        return self.build(metric, found)

    def matcher_list(self) -> list[tuple[int, Matcher]]:
        self.pos += 1  # the "{"
        found: list[tuple[int, Matcher]] = []
        while True:
            self.skip_space()
            if self.peek() == "}":
                self.pos += 1
                return found
            found.append((self.pos, self.matcher()))
            self.skip_space()
            if self.peek() == ",":
                self.pos += 1
            elif self.peek() == "}":
                self.pos += 1
                return found
            elif not self.peek():
                self.fail("missing '}'")
            else:
                self.fail(f"unexpected {self.peek()!r}; expected ',' or '}}'")

    def matcher(self) -> Matcher:
        start = self.pos
        if self.peek() in _QUOTES:
            label = self.string()
            self.skip_space()
            # Prometheus 3 writes a metric name that needs quoting as a bare string: {"a b"}.
            if self.peek() in (",", "}"):
                if not label:
                    self.fail("empty metric name", start)
                return Matcher(METRIC_LABEL, MatchOp.EQ, label)
            if not label:
                self.fail("empty label name", start)
        else:
            label = self.name("a label name or '}'")
            self.skip_space()
        op = next((op for op in _OPS if self.text.startswith(op.value, self.pos)), None)
        if op is None:
            self.fail(f"expected one of =, !=, =~, !~ after label {label!r}")
        self.pos += len(op.value)
        self.skip_space()
        if self.peek() not in _QUOTES:
            self.fail(f"expected a quoted value for label {label!r}")
        value_pos = self.pos
        value = self.string()
        try:
            return Matcher(label, op, value)
        except QueryError as exc:
            self.fail(str(exc), value_pos)

    def build(self, metric: str, found: list[tuple[int, Matcher]]) -> Selector:
        named = [(pos, m) for pos, m in found if m.label == METRIC_LABEL]
        matchers = tuple(m for _, m in found if m.label != METRIC_LABEL)
        if metric:
            if named:
                self.fail("metric name given twice", named[0][0])
            return Selector(metric, matchers)
        if not named:
            self.fail('missing metric name; write name{...} or {__name__="name", ...}', 0)
        if len(named) > 1:
            self.fail("metric name given twice", named[1][0])
        pos, name = named[0]
        if name.op is not MatchOp.EQ:
            self.fail(f"{METRIC_LABEL} must be matched with '=', not '{name.op.value}'", pos)
        if not name.value:
            self.fail("empty metric name", pos)
        return Selector(name.value, matchers)
