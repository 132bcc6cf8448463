"""Series selectors: accepted syntax, canonical rendering, matching and rejection by column."""

from __future__ import annotations

import re

import pytest

from tidegate.errors import QueryError
from tidegate.query.selector import Matcher, MatchOp, Selector, parse_selector

EQ, NE, RE, NRE = MatchOp.EQ, MatchOp.NE, MatchOp.RE, MatchOp.NRE


@pytest.mark.parametrize(
    ("text", "metric", "matchers"),
    [
        ("up", "up", ()),
        ("  up  ", "up", ()),
        ("up{}", "up", ()),
        ("up { }", "up", ()),
        (
            "http.server.request.duration",
            "http.server.request.duration",
            (),
        ),
        ("ns:rule/x-y.total", "ns:rule/x-y.total", ()),
        ('up{job="api"}', "up", (Matcher("job", EQ, "api"),)),
        ("up{job='api'}", "up", (Matcher("job", EQ, "api"),)),
        (
            'm{a="1", b!="2", c=~"3.*", d!~"4|5"}',
            "m",
            (
                Matcher("a", EQ, "1"),
                Matcher("b", NE, "2"),
                Matcher("c", RE, "3.*"),
                Matcher("d", NRE, "4|5"),
            ),
        ),
        ('m{service.name="api",}', "m", (Matcher("service.name", EQ, "api"),)),
        (' m { a = "1" , b =~ "x" , } ', "m", (Matcher("a", EQ, "1"), Matcher("b", RE, "x"))),
        ('m{"odd label!"="v"}', "m", (Matcher("odd label!", EQ, "v"),)),
        ('m{a="x", a="y"}', "m", (Matcher("a", EQ, "x"), Matcher("a", EQ, "y"))),
        ('m{a=""}', "m", (Matcher("a", EQ, ""),)),
        ('{__name__="up"}', "up", ()),
        ('{job="api", __name__="up"}', "up", (Matcher("job", EQ, "api"),)),
        ('{__name__="a metric"}', "a metric", ()),
        ('{"a metric", job="api"}', "a metric", (Matcher("job", EQ, "api"),)),
        (
            r'm{a="q\"d", b="s\'q", c="b\\s", d="n\nt\t"}',
            "m",
            (
                Matcher("a", EQ, 'q"d'),
                Matcher("b", EQ, "s'q"),
                Matcher("c", EQ, "b\\s"),
                Matcher("d", EQ, "n\nt\t"),
            ),
        ),
        (r"m{a='q\"d', b='s\'q'}", "m", (Matcher("a", EQ, 'q"d'), Matcher("b", EQ, "s'q"))),
        ('m{a="{},="}', "m", (Matcher("a", EQ, "{},="),)),
        ('m{path=~"/api/v[0-9]+/.*"}', "m", (Matcher("path", RE, "/api/v[0-9]+/.*"),)),
    ],
)
def test_parses(text: str, metric: str, matchers: tuple[Matcher, ...]) -> None:
    selector = parse_selector(text)
    assert selector == Selector(metric, matchers)


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("up", "up"),
        ("up{}", "up"),
        (" m {a='1',b!~\"x\",} ", 'm{a="1", b!~"x"}'),
        ('{__name__="m", "odd label"=~"v"}', 'm{"odd label"=~"v"}'),
        ('{__name__="a metric", a="b"}', '{__name__="a metric", a="b"}'),
        ('{"9lives"}', '{__name__="9lives"}'),
        # Single quotes need no escape inside double quotes; the other specials keep theirs.
        (r"m{a='q\"\'\\\n\t'}", r"""m{a="q\"'\\\n\t"}"""),
    ],
)
def test_renders_canonical_text_that_parses_back(text: str, canonical: str) -> None:
    selector = parse_selector(text)
    assert str(selector) == canonical
    assert parse_selector(canonical) == selector


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "at column 1: empty selector"),
        ("   ", "at column 4: empty selector"),
        ("9up", "at column 1: expected a metric name"),
        ("up{", "at column 4: expected a label name or '}'"),
        ('up{job="a"', "at column 11: missing '}'"),
        ("up{job}", "at column 7: expected one of =, !=, =~, !~ after label 'job'"),
        ('up{job=="a"}', "at column 8: expected a quoted value for label 'job'"),
        ("up{job=api}", "at column 8: expected a quoted value for label 'job'"),
        ('up{job="a" env="b"}', "at column 12: unexpected 'e'; expected ',' or '}'"),
        ('up{job="a",,}', "at column 12: expected a label name or '}'"),
        ("up{,}", "at column 4: expected a label name or '}'"),
        ('up{job="a}', "at column 8: unterminated string"),
        ('up{job="a\\', "at column 8: unterminated string"),
        (r'up{job="\d"}', r"at column 9: unknown escape '\d' in string"),
        ("up job", "at column 4: unexpected 'j'; expected '{' or the end of the selector"),
        ('up{a="b"} x', "at column 11: unexpected 'x'"),
        ('up{a="b"}}', "at column 10: unexpected '}'"),
        ('up{""="b"}', "at column 4: empty label name"),
        ("{}", "at column 1: missing metric name"),
        ('{job="api"}', "at column 1: missing metric name"),
        ('{__name__=""}', "at column 2: empty metric name"),
        ('{""}', "at column 2: empty metric name"),
        ('{__name__=~"up.*"}', "at column 2: __name__ must be matched with '=', not '=~'"),
        ('{__name__!="up"}', "__name__ must be matched with '=', not '!='"),
        ('{__name__="a", __name__="b"}', "at column 16: metric name given twice"),
        ('up{__name__="up"}', "at column 4: metric name given twice"),
        ('up{"down"}', "at column 4: metric name given twice"),
        ('up{code=~"(5"}', "at column 10: invalid regex for label 'code': missing ), unterminated"),
        ("up{code!~'*'}", "at column 10: invalid regex for label 'code': nothing to repeat"),
        ('up{a=~"' + "x" * 1001 + '"}', "regex for label 'a' is 1001 characters long"),
    ],
)
def test_rejects(text: str, message: str) -> None:
    with pytest.raises(QueryError, match=re.escape(message)):
        parse_selector(text)


def test_error_quotes_the_input() -> None:
    with pytest.raises(QueryError, match=re.escape("invalid selector 'up{job}' at column 7")):
        parse_selector("up{job}")


def test_regex_at_the_length_limit_is_accepted() -> None:
    selector = parse_selector('m{a=~"' + "x" * 1000 + '"}')
    assert selector.matchers[0].matches("x" * 1000)


@pytest.mark.parametrize(
    ("op", "value", "actual", "expected"),
    [
        (EQ, "api", "api", True),
        (EQ, "api", "API", False),
        (EQ, "api", None, False),
        (EQ, "", None, True),
        (EQ, "", "", True),
        (NE, "api", "web", True),
        (NE, "api", "api", False),
        (NE, "api", None, True),
        (NE, "", None, False),
        (RE, "5..", "503", True),
        (RE, "5..", "5031", False),
        (RE, "5..", "x503", False),
        (RE, "a|b", "a", True),
        (RE, "a|b", "ab", False),
        (RE, ".*", None, True),
        (RE, ".+", None, False),
        (NRE, "5..", "503", False),
        (NRE, "5..", "200", True),
        (NRE, "5..", "5031", True),
        (NRE, ".+", None, True),
    ],
)
def test_matcher_matches(op: MatchOp, value: str, actual: str | None, expected: bool) -> None:
    assert Matcher("code", op, value).matches(actual) is expected


def test_selector_requires_every_matcher() -> None:
    selector = parse_selector('m{code=~"5..", code!="503", missing=""}')
    assert selector.matches({"code": "500"})
    assert not selector.matches({"code": "503"})
    assert not selector.matches({"code": "200"})
    assert not selector.matches({"code": "500", "missing": "set"})


def test_matchers_compare_by_value_not_compiled_pattern() -> None:
    assert Matcher("a", RE, "x.*") == Matcher("a", RE, "x.*")
    assert hash(Matcher("a", RE, "x.*")) == hash(Matcher("a", RE, "x.*"))
    assert Matcher("a", RE, "x.*") != Matcher("a", NRE, "x.*")


def test_direct_construction_is_validated() -> None:
    with pytest.raises(QueryError, match=re.escape("invalid regex for label 'a'")):
        Matcher("a", RE, "[")
    with pytest.raises(QueryError, match="empty metric name"):
        Selector("")
