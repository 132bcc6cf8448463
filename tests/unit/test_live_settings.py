"""The registry of live keys: parsing of text and TOML values, validation messages, the
snapshot's accessors and their fallbacks, and the flattening of `[live.settings]`."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest

from tidegate.config import Config
from tidegate.errors import ConfigError
from tidegate.live import LiveSnapshot, parse_value
from tidegate.live.settings import PATTERNS, flatten, format_value, rejection_label


@pytest.mark.parametrize(
    ("key", "raw", "expected"),
    [
        ("limits.acme.points_per_second", "5000", 5000.0),
        ("limits.acme.points_per_second", 5000, 5000.0),
        ("limits.*.spans_per_second", " 2.5 ", 2.5),
        ("limits.a-b_c.requests_per_second", "1e3", 1000.0),
        ("limits.acme.points_burst", 1, 1.0),
        ("limits.acme.spans_burst", "1.5", 1.5),
        ("limits.*.requests_burst", 100.0, 100.0),
        ("cardinality.acme.max_active_series", "0", 0),
        ("cardinality.*.max_active_series", 100000, 100000),
        ("sampling.checkout.ratio", "0.25", 0.25),
        ("sampling.checkout.api.v2.ratio", 0, 0.0),
        ("sampling.*.ratio", 1, 1.0),
        ("rollups.window_seconds", "30", 30),
        ("rollups.window_seconds", 3600, 3600),
        ("retention.metrics_days", "+90", 90),
        ("retention.traces_days", 1, 1),
        ("log_level", "DEBUG", "debug"),
        ("log_level", " warning\n", "warning"),
    ],
)
def test_valid_values_parse_to_exact_values(key: str, raw: Any, expected: Any) -> None:
    value = parse_value(key, raw)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("key", "raw", "message"),
    [
        ("limits.acme.points_per_second", "0", "limits.acme.points_per_second must be greater"),
        ("limits.acme.points_per_second", -1, "must be greater than 0, got -1"),
        ("limits.acme.points_per_second", "fast", "must be a number, got 'fast'"),
        ("limits.acme.points_per_second", "nan", "must be a finite number"),
        ("limits.acme.points_per_second", "inf", "must be a finite number"),
        ("limits.acme.points_per_second", True, "must be a number, got True"),
        ("limits.acme.points_per_second", [1], "must be a number, got list"),
        ("limits.acme.points_burst", "0.5", "limits.acme.points_burst must be at least 1"),
        ("cardinality.acme.max_active_series", "-1", "must be 0 or more"),
        ("cardinality.acme.max_active_series", "1.5", "must be a whole number, got '1.5'"),
        ("cardinality.acme.max_active_series", 10.0, "must be a whole number, got 10.0"),
        ("sampling.checkout.ratio", "1.01", "sampling.checkout.ratio must be between 0 and 1"),
        ("sampling.checkout.ratio", -0.1, "must be between 0 and 1"),
        ("rollups.window_seconds", "7", "must be a whole number of seconds dividing 3600, got 7"),
        ("rollups.window_seconds", 0, "dividing 3600, got 0"),
        ("rollups.window_seconds", 7200, "dividing 3600, got 7200"),
        ("retention.metrics_days", "0", "retention.metrics_days must be at least 1, got 0"),
        ("retention.traces_days", "seven", "must be a whole number, got 'seven'"),
        ("log_level", "verbose", "log_level must be one of debug, info, warning, error"),
        ("log_level", 10, "log_level must be one of"),
        (
            "limits.acme.points_per_second",
            "x" * 100,
            "got 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...",
        ),
    ],
)
def test_invalid_values_are_refused_naming_the_key(key: str, raw: Any, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_value(key, raw)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("limits.acme.bytes_per_second", "unknown live setting 'limits.acme.bytes_per_second'"),
        ("limits.acme", "unknown live setting 'limits.acme'"),
        ("limits.acme.x.points_per_second", "unknown live setting"),
        ("cardinality.acme.max_series", "unknown live setting 'cardinality.acme.max_series'"),
        ("sampling.ratio", "unknown live setting 'sampling.ratio'"),
        ("sampling..ratio", "the service name must be 1 to 255 printable characters"),
        ("sampling.check out.ratio", "the service name must not contain spaces"),
        ("rollups.lateness_seconds", "unknown live setting 'rollups.lateness_seconds'"),
        ("loglevel", "unknown live setting 'loglevel'"),
        ("limits.Acme.points_per_second", "tenant 'Acme' must be * or match"),
        ("limits._acme.points_per_second", "tenant '_acme' must be"),
        ("limits..points_per_second", "tenant '' must be"),
        ("limits." + "a" * 64 + ".points_per_second", "must be * or match"),
    ],
)
def test_unknown_keys_are_refused_by_name(key: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_value(key, "1")
    assert message in str(caught.value)


def test_longest_tenant_name_is_accepted() -> None:
    assert parse_value("limits." + "a" * 63 + ".points_per_second", "1") == 1.0


@pytest.mark.parametrize(
    ("key", "label"),
    [
        ("limits.acme.points_per_second", "limits.*.points_per_second"),
        ("limits.*.requests_burst", "limits.*.requests_burst"),
        ("cardinality.acme.max_active_series", "cardinality.*.max_active_series"),
        ("sampling.a.b.ratio", "sampling.*.ratio"),
        ("log_level", "log_level"),
        ("no.such.key", "unknown"),
        ("limits.BAD.points_per_second", "unknown"),
    ],
)
def test_rejection_labels_are_bounded_key_families(key: str, label: str) -> None:
    assert rejection_label(key) == label
    assert label in (*PATTERNS, "unknown")


def snapshot(values: dict[str, Any]) -> LiveSnapshot:
    config = Config()
    config.rollups.window_seconds = 30
    config.retention.metrics_days = 90
    config.retention.traces_days = 14
    config.log_level = "WARNING"
    return LiveSnapshot.build({k: parse_value(k, v) for k, v in values.items()}, config)


def test_limits_fall_back_to_star_per_key_and_burst_defaults_to_one_second() -> None:
    live = snapshot(
        {
            "limits.*.points_per_second": 100,
            "limits.*.points_burst": 500,
            "limits.acme.points_per_second": 5000,
            "limits.acme.spans_per_second": 0.5,
            "limits.beta.points_burst": 50,
            "limits.gamma.requests_burst": 10,
        }
    )
    assert live.limit("acme", "points") == (5000.0, 500.0)
    assert live.limit("acme", "spans") == (0.5, 1.0)
    assert live.limit("beta", "points") == (100.0, 50.0)
    assert live.limit("other", "points") == (100.0, 500.0)
    assert live.limit("other", "spans") is None
    assert live.limit("gamma", "requests") is None  # a burst without any rate: unlimited
    with pytest.raises(ValueError, match="kind must be one of points, spans, requests"):
        live.limit("acme", "bytes")


def test_burst_of_an_unset_burst_is_the_rate_when_above_one() -> None:
    assert snapshot({"limits.*.points_per_second": 250}).limit("x", "points") == (250.0, 250.0)


def test_series_limits_and_sampling() -> None:
    live = snapshot(
        {
            "cardinality.acme.max_active_series": 1000,
            "cardinality.*.max_active_series": 50,
            "sampling.checkout.api.ratio": "0.5",
            "sampling.*.ratio": 0.1,
        }
    )
    assert live.series_limits() == ({"acme": 1000}, 50)
    assert live.sampling() == ({"checkout.api": 0.5}, 0.1)
    assert snapshot({}).series_limits() == ({}, None)
    assert snapshot({}).sampling() == ({}, 1.0)


def test_static_values_apply_while_live_keys_are_unset() -> None:
    live = snapshot({})
    assert (live.window_seconds, live.metrics_days, live.traces_days) == (30, 90, 14)
    assert live.log_level == "warning"
    live = snapshot(
        {
            "rollups.window_seconds": "60",
            "retention.metrics_days": 7,
            "retention.traces_days": "2",
            "log_level": "ERROR",
        }
    )
    assert (live.window_seconds, live.metrics_days, live.traces_days) == (60, 7, 2)
    assert live.log_level == "error"


def test_snapshot_values_cannot_be_changed() -> None:
    live = snapshot({"log_level": "info"})
    with pytest.raises(TypeError):
        live.values["log_level"] = "debug"  # type: ignore[index]


def test_toml_tables_flatten_to_dotted_keys() -> None:
    document = tomllib.loads(
        """
        [live.settings]
        log_level = "debug"
        "sampling.checkout.api.ratio" = 0.5
        [live.settings.limits.acme]
        points_per_second = 5000
        [live.settings.sampling."web.front"]
        ratio = 0.25
        """
    )
    assert flatten(document["live"]["settings"]) == {
        "log_level": "debug",
        "sampling.checkout.api.ratio": 0.5,
        "limits.acme.points_per_second": 5000,
        "sampling.web.front.ratio": 0.25,
    }


def test_a_key_spelled_twice_in_toml_is_refused() -> None:
    document = tomllib.loads(
        """
        "limits.acme.points_per_second" = 1
        [limits.acme]
        points_per_second = 2
        """
    )
    with pytest.raises(ConfigError, match=r"limits\.acme\.points_per_second is set twice"):
        flatten(document)


@pytest.mark.parametrize(
    ("value", "text"), [(5000.0, "5000.0"), (0.25, "0.25"), (30, "30"), ("info", "info")]
)
def test_values_print_as_text(value: Any, text: str) -> None:
    assert format_value(value) == text
